"""The rules of fan-out: who gets a new tweet (and loses a deleted one), and what a follow or
unfollow does to a timeline.

A tweet goes to its author, to the users it mentions (the replied-to author counts as mentioned)
and to the author's followers; a tweet that is not for everyone (social.rules.is_for_everyone: a
reply to someone else) reaches only the followers who also follow the replied-to author. A follow
or an unfollow rebuilds the follower's window from the owners (social.homes.HomeSource), as
timeline_svc does for a user back after a while: it changes more than the followee's own tweets,
and several workers may apply a follow and the unfollow after it in either order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from fanout_svc.celebrities import Celebrities
from social import State, is_for_everyone
from social.homes import HomeSource


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


@dataclass(frozen=True, slots=True)
class FollowChanged:
    follower_id: int
    followee_id: int
    following: bool


class FollowGraph(Protocol):
    def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]: ...
    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]: ...
    async def following(self, user_id: int) -> list[int]: ...


class HomeTimelineWrites(Protocol):
    """What fan-out does to home timelines (social.timelines.TimelineStore)."""

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int: ...
    async def retract(self, tweet_id: int, user_ids: Sequence[int]) -> None: ...
    async def announce_edit(self, tweet_id: int, user_ids: Sequence[int]) -> int: ...
    async def exists(self, user_id: int) -> bool: ...


class CelebrityLists(Protocol):
    """Celebrities' own recent tweets (social.timelines.celebrity_lists)."""

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int: ...
    async def retract(self, tweet_id: int, user_ids: Sequence[int]) -> None: ...
    async def announce_edit(self, tweet_id: int, user_ids: Sequence[int]) -> int: ...


class GlobalAnnouncer(Protocol):
    """The global timeline's live streams (social.live.GlobalFeed)."""

    async def announce(self, tweet_id: int, *, deleted: bool, edited: bool = False) -> None: ...


class Fanout:
    def __init__(
        self,
        graph: FollowGraph,
        timelines: HomeTimelineWrites,
        global_feed: GlobalAnnouncer,
        homes: HomeSource,
        celebrities: Celebrities | None = None,
        celebrity_lists: CelebrityLists | None = None,
    ) -> None:
        self._graph = graph
        self._timelines = timelines
        self._homes = homes
        self._global = global_feed
        self._celebrities = celebrities
        self._lists = celebrity_lists

    async def tweet_changed(self, event: TweetChanged) -> int:
        """Writes a new tweet into the home timelines it belongs in, or takes a deleted one out of
        every timeline that may hold it, and tells the live streams; returns how many timelines
        took a new tweet (absent timelines are skipped: they are rebuilt when read). An edited tweet
        changes no timeline: the streams that may show it are told."""
        if event.deleted:
            await self._retract(event)
            return 0
        if event.edited:
            await self._announce_edit(event)
            return 0
        celebrity = (
            self._celebrities is not None
            and await self._celebrities.settle(event.author_id) is State.CELEBRITY
        )
        delivered = await self._timelines.deliver(
            event.tweet_id, list(dict.fromkeys([event.author_id, *event.mentioned_user_ids]))
        )
        for_everyone = is_for_everyone(event)
        if self._lists is not None and for_everyone:
            # The author's own list, if readers built one, and the streams of celebrity followers.
            await self._lists.deliver(event.tweet_id, [event.author_id])
        if celebrity:
            delivered += await self._reply_of_celebrity(event)
        else:
            followers_seen = 0
            async for page in self._graph.follower_pages(event.author_id):
                followers_seen += len(page)
                followers = page
                if not for_everyone and event.reply_to_author_id is not None and page:
                    followers = await self._graph.followers_among(event.reply_to_author_id, page)
                delivered += await self._timelines.deliver(event.tweet_id, followers)
            if self._celebrities is not None:
                await self._celebrities.after_fanout(event.author_id, followers_seen)
        if event.public:
            await self._global.announce(event.tweet_id, deleted=False)
        return delivered

    async def _reply_of_celebrity(self, event: TweetChanged) -> int:
        """A celebrity's reply to someone else reaches only the followers of both: found from the
        replied-to author's followers (usually far fewer than the celebrity's)."""
        if is_for_everyone(event) or event.reply_to_author_id is None:
            return 0
        delivered = 0
        async for page in self._graph.follower_pages(event.reply_to_author_id):
            if page:
                both = await self._graph.followers_among(event.author_id, page)
                delivered += await self._timelines.deliver(event.tweet_id, both)
        return delivered

    async def _holders(self, event: TweetChanged) -> AsyncIterator[list[int]]:
        """Everyone whose timeline may hold the tweet, whatever the reply filter decided, a group
        at a time: its author and those it mentions, then the author's followers page by page."""
        yield list(dict.fromkeys([event.author_id, *event.mentioned_user_ids]))
        async for followers in self._graph.follower_pages(event.author_id):
            yield followers

    async def _retract(self, event: TweetChanged) -> None:
        async for users in self._holders(event):  # removing from one that lacks it is harmless
            await self._timelines.retract(event.tweet_id, users)
        if self._lists is not None:
            await self._lists.retract(event.tweet_id, [event.author_id])
        if event.public:
            await self._global.announce(event.tweet_id, deleted=True)

    async def _announce_edit(self, event: TweetChanged) -> None:
        """The streams of whoever may show the tweet (those a deletion reaches) hear of the edit;
        each reads the tweet as it is now. A stream showing a retweet of it is not told: the retweet
        shows the new version when next read. Mentions follow the new text: a user it mentions now
        gets it as a new tweet, and one it no longer mentions loses it unless it belongs in their
        home anyway (social.rules.belongs_in_home: they follow its author, and the replied-to
        author if it is not for everyone)."""
        now = set(event.mentioned_user_ids)
        added = [u for u in event.mentioned_user_ids if u not in event.previously_mentioned]
        removed = [u for u in event.previously_mentioned if u not in now and u != event.author_id]
        if added:
            await self._timelines.deliver(event.tweet_id, added)
        if removed:
            keep = set(await self._graph.followers_among(event.author_id, removed))
            if keep and not is_for_everyone(event) and event.reply_to_author_id is not None:
                keep &= set(await self._graph.followers_among(event.reply_to_author_id, sorted(keep)))
            await self._timelines.retract(event.tweet_id, [u for u in removed if u not in keep])
        async for users in self._holders(event):
            await self._timelines.announce_edit(event.tweet_id, users)
        if self._lists is not None:
            await self._lists.announce_edit(event.tweet_id, [event.author_id])
        if event.public:
            await self._global.announce(event.tweet_id, deleted=False, edited=True)

    async def follow_changed(self, event: FollowChanged) -> None:
        """The follower's window rebuilt from the owners, and their open streams told of a
        celebrity they now merge or no longer do. What the event says is not trusted: the follow
        graph is read as it is now, so a follow applied after the unfollow that came later (two
        workers, a retry) changes nothing wrong."""
        if not await self._timelines.exists(event.follower_id):
            return  # rebuilt from the follow graph when next read
        if self._celebrities is not None:
            following = event.followee_id in await self._graph.following(event.follower_id)
            await self._celebrities.follow_changed(event.follower_id, event.followee_id, following)
        await self._homes.rebuild(event.follower_id)
