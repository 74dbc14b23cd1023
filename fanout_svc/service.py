"""The rules of fan-out: who gets a new tweet (and loses a deleted one), and what a follow or
unfollow does to a timeline.

A tweet goes to its author, to the users it mentions (the replied-to author counts as mentioned)
and to the author's followers; a tweet that is not for everyone (social.rules.is_for_everyone: a
reply to someone else) reaches only the followers who also follow the replied-to author. An edit
changes no timeline but those of users it mentions now and did not, or no longer does, and is told
to every stream that may show the tweet. A celebrity's tweets for everyone are merged at read
time instead (fanout_svc.celebrities); its replies to someone else still reach the followers of
both. A follow or an unfollow rebuilds the
follower's window from the owners (social.homes.HomeSource), as timeline_svc does for a user back
after a while: it changes more than the followee's own tweets, and several workers may apply a
follow and the unfollow after it in either order.

The followers come from the follower lists users_svc keeps in Redis (social.follower_lists): each
event becomes a job (an edit, a few: social.timelines.FanoutJob) and a batch of events is written
by a few calls of one script, with no Python per follower. A list that is missing is built by
users_svc when a job needs it (a miss), and the jobs that needed it run again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fanout_svc.celebrities import Celebrities
from social import State, is_for_everyone
from social.homes import HomeSource
from social.live import GLOBAL_CHANNEL
from social.timelines import CALL_BUDGET, FanoutJob, JobOutcome


@dataclass(frozen=True, slots=True)
class TweetChanged:
    tweet_id: int
    author_id: int
    deleted: bool = False
    reply_to_author_id: int | None = None
    mentioned_user_ids: tuple[int, ...] = ()
    public: bool = False
    # Edited (not new): the streams that may show it are told, and the timelines of those it
    # mentions now and did not (or no longer does) take it (or lose it).
    edited: bool = False
    previously_mentioned: tuple[int, ...] = ()
    # The trace context of its handling (meshkit.tracing), carried by the live messages it causes.
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class FollowChanged:
    follower_id: int
    followee_id: int
    following: bool


class FollowGraph(Protocol):
    async def following(self, user_id: int) -> list[int]: ...
    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]: ...


class FollowerLists(Protocol):
    """What fan-out asks of users_svc about the follower lists (social.peers.UsersPeer)."""

    async def ensure_follower_lists(self, author_ids: Sequence[int]) -> None:
        """Builds the lists of `author_ids` that are missing; returns once they are built."""
        ...

    async def sync_follow(self, follower_id: int, followee_id: int) -> None:
        """Brings the followee's list in line with the follow graph for this follower."""
        ...


class HomeTimelineWrites(Protocol):
    """What fan-out does to home timelines (social.timelines.TimelineStore)."""

    async def fan_out(self, jobs: Sequence[FanoutJob], budget: int) -> list[JobOutcome]: ...
    async def exists(self, user_id: int) -> bool: ...


class CelebrityLists(Protocol):
    """Celebrities' own recent tweets (social.timelines.celebrity_lists): where a job writes them."""

    def key(self, ident: int) -> str: ...
    def channel(self, ident: int) -> str: ...


class FollowerListMissing(Exception):
    """A follower list the event needs could not be built: the event is retried later."""


class Fanout:
    def __init__(
        self,
        graph: FollowGraph,
        lists: FollowerLists,
        timelines: HomeTimelineWrites,
        homes: HomeSource,
        celebrities: Celebrities | None = None,
        celebrity_lists: CelebrityLists | None = None,
        *,
        call_budget: int = CALL_BUDGET,
    ) -> None:
        self._call_budget = call_budget
        self._graph = graph
        self._lists = lists
        self._timelines = timelines
        self._homes = homes
        self._celebrities = celebrities
        self._celebrity_lists = celebrity_lists

    def job(self, event: TweetChanged, celebrity: bool) -> FanoutJob:
        """What the event writes: to its author and those it mentions; to the author's own list
        (when for everyone); to the followers it is for; and to the global timeline's streams.
        A deletion is taken out of every timeline that may hold it, whatever the reply filter
        decided (removing is harmless); an edit is told to the streams of those same timelines
        (their timelines do not change)."""
        for_everyone = is_for_everyone(event)
        everyone_who_may_hold = event.deleted or event.edited
        followers_of: int | None = event.author_id
        among = None if for_everyone else event.reply_to_author_id
        if celebrity and for_everyone and not everyone_who_may_hold:
            followers_of = None  # merged at read time
        if everyone_who_may_hold:
            among = None
        others: tuple[tuple[str, str], ...] = ()
        if self._celebrity_lists is not None and (for_everyone or everyone_who_may_hold):
            lists = self._celebrity_lists
            others = ((lists.key(event.author_id), lists.channel(event.author_id)),)
        return FanoutJob(
            event.tweet_id,
            deleted=event.deleted,
            edited=event.edited and not event.deleted,
            homes=tuple(dict.fromkeys([event.author_id, *event.mentioned_user_ids])),
            others=others,
            followers_of=followers_of,
            among=among,
            announce=GLOBAL_CHANNEL if event.public else "",
            trace=event.trace,
        )

    async def jobs(self, event: TweetChanged, celebrity: bool) -> list[FanoutJob]:
        """The event's jobs (job); an edit's also move the tweet between mentioned timelines: a user
        it mentions now and did not gets it as a new tweet, one it no longer mentions loses it unless
        it belongs in their home anyway (social.rules.belongs_in_home: they follow its author, and
        the replied-to author if it is not for everyone). A stream showing a retweet of it is not
        told: the retweet shows the new version when next read."""
        if not event.edited or event.deleted:
            return [self.job(event, celebrity)]
        now = set(event.mentioned_user_ids)
        added = tuple(u for u in event.mentioned_user_ids if u not in event.previously_mentioned)
        removed = [u for u in event.previously_mentioned if u not in now and u != event.author_id]
        jobs = []
        if added:
            jobs.append(FanoutJob(event.tweet_id, homes=added, trace=event.trace))
        if removed:
            keep = set(await self._graph.followers_among(event.author_id, removed))
            if keep and not is_for_everyone(event) and event.reply_to_author_id is not None:
                keep &= set(await self._graph.followers_among(event.reply_to_author_id, sorted(keep)))
            if gone := tuple(u for u in removed if u not in keep):
                jobs.append(FanoutJob(event.tweet_id, deleted=True, homes=gone, trace=event.trace))
        return [*jobs, self.job(event, celebrity)]

    async def tweets_changed(self, events: Sequence[TweetChanged]) -> list[int | Exception]:
        """Writes each new tweet into the home timelines it belongs in, takes each deleted one out
        of every timeline that may hold it, and tells the live streams (of an edit too); for each
        event, how many timelines took a new tweet (absent timelines are skipped: they are rebuilt
        when read), or the error it alone failed with."""
        new = [e.author_id for e in events if not e.deleted and not e.edited]
        states = await self._celebrity_states(new)
        planned: list[list[FanoutJob] | Exception] = []
        for event in events:
            state = states.get(event.author_id)
            try:
                if isinstance(state, Exception):
                    raise state
                planned.append(await self.jobs(event, state is State.CELEBRITY))
            except Exception as error:
                planned.append(error)
        jobs = [job for p in planned if not isinstance(p, Exception) for job in p]
        outcomes = iter(await self._write(jobs))
        results: list[int | Exception] = []
        for event, plan in zip(events, planned, strict=True):
            if isinstance(plan, Exception):
                results.append(plan)
                continue
            mine = [next(outcomes) for _ in plan]
            failed = next((o for o in mine if isinstance(o, Exception)), None)
            if failed is not None:
                results.append(failed)
                continue
            outcome = mine[-1]
            assert isinstance(outcome, JobOutcome)
            results.append(0 if event.deleted or event.edited else outcome.written)
            celebrity = states.get(event.author_id) is State.CELEBRITY
            if self._celebrities is not None and not (event.deleted or event.edited or celebrity):
                try:
                    await self._celebrities.after_fanout(event.author_id, outcome.followers or 0)
                except Exception as error:
                    results[-1] = error
        return results

    async def tweet_changed(self, event: TweetChanged) -> int:
        """One event's fan-out (tweets_changed for a batch of one)."""
        (result,) = await self.tweets_changed([event])
        if isinstance(result, Exception):
            raise result
        return result

    async def _celebrity_states(self, author_ids: Sequence[int]) -> dict[int, State | Exception | None]:
        if self._celebrities is None or not author_ids:
            return {}
        return await self._celebrities.settle_all(author_ids)

    async def _write(self, jobs: Sequence[FanoutJob]) -> list[JobOutcome | Exception]:
        """The jobs' outcomes; the jobs whose follower lists were missing run again once users_svc
        has built them (FollowerListMissing if it could not)."""
        outcomes: list[JobOutcome | Exception] = list(await self._timelines.fan_out(jobs, self._call_budget))
        waiting = [n for n, o in enumerate(outcomes) if isinstance(o, JobOutcome) and o.missing]
        if not waiting:
            return outcomes
        authors = sorted({a for n in waiting for a in (jobs[n].followers_of, jobs[n].among) if a is not None})
        try:
            await self._lists.ensure_follower_lists(authors)
            again = await self._timelines.fan_out([jobs[n] for n in waiting], self._call_budget)
        except Exception as error:
            for n in waiting:
                outcomes[n] = error
            return outcomes
        for n, outcome in zip(waiting, again, strict=True):
            outcomes[n] = (
                FollowerListMissing(f"the follower lists of {authors} are missing")
                if outcome.missing
                else outcome
            )
        return outcomes

    async def follow_changed(self, event: FollowChanged) -> None:
        """The followee's follower list first (so that a tweet fanned out from now on finds the
        follower, and one fanned out before is among those the rebuild reads); then the follower's
        window rebuilt from the owners, and their open streams told of a celebrity they now merge
        or no longer do. What the event says is not trusted: the follow graph is read as it is now,
        so a follow applied after the unfollow that came later (two workers, a retry) changes
        nothing wrong."""
        await self._lists.sync_follow(event.follower_id, event.followee_id)
        if not await self._timelines.exists(event.follower_id):
            return  # rebuilt from the follow graph when next read
        if self._celebrities is not None:
            following = event.followee_id in await self._graph.following(event.follower_id)
            await self._celebrities.follow_changed(event.follower_id, event.followee_id, following)
        await self._homes.rebuild(event.follower_id)
