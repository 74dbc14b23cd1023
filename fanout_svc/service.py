"""The rules of fan-out: who gets a new tweet (and loses a deleted one), and what a follow or
unfollow does to a timeline.

A tweet goes to its author, to the users it mentions (the replied-to author counts as mentioned)
and to the author's followers; a tweet that is not for everyone (social.rules.is_for_everyone: a
reply to someone else) reaches only the followers who also follow the replied-to author. A follow
merges what belongs in the follower's home (social.rules.belongs_in_home), the rule timeline_svc
applies when it rebuilds a timeline from PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fanout_svc.celebrities import Celebrities
from social import State, TweetRef, belongs_in_home, is_for_everyone


@dataclass(frozen=True, slots=True)
class TweetChanged:
    tweet_id: int
    author_id: int
    deleted: bool = False
    reply_to_author_id: int | None = None
    mentioned_user_ids: tuple[int, ...] = ()
    public: bool = False


@dataclass(frozen=True, slots=True)
class FollowChanged:
    follower_id: int
    followee_id: int
    following: bool


class FollowGraph(Protocol):
    def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]: ...
    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]: ...
    async def following(self, user_id: int) -> list[int]: ...


class TweetIndex(Protocol):
    async def ids_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]: ...
    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]: ...


class HomeTimelineWrites(Protocol):
    """What fan-out does to home timelines (social.timelines.TimelineStore)."""

    max_entries: int

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int: ...
    async def retract(self, tweet_id: int, user_ids: Sequence[int]) -> None: ...
    async def exists(self, user_id: int) -> bool: ...
    async def merge(self, user_id: int, tweet_ids: Iterable[int]) -> int: ...
    async def remove(self, user_id: int, tweet_ids: Iterable[int]) -> None: ...
    async def oldest(self, user_id: int) -> int | None: ...


# ListTweetIdsByAuthors answers at most this many ids per call.
_ID_BATCH = 1000


class CelebrityLists(Protocol):
    """Celebrities' own recent tweets (social.timelines.celebrity_lists)."""

    async def deliver(self, tweet_id: int, user_ids: Sequence[int], chunk: int = 1000) -> int: ...
    async def retract(self, tweet_id: int, user_ids: Sequence[int]) -> None: ...


class GlobalAnnouncer(Protocol):
    """The global timeline's live streams (social.live.GlobalFeed)."""

    async def announce(self, tweet_id: int, *, deleted: bool) -> None: ...


class Fanout:
    def __init__(
        self,
        graph: FollowGraph,
        tweets: TweetIndex,
        timelines: HomeTimelineWrites,
        global_feed: GlobalAnnouncer,
        celebrities: Celebrities | None = None,
        celebrity_lists: CelebrityLists | None = None,
    ) -> None:
        self._graph = graph
        self._tweets = tweets
        self._timelines = timelines
        self._global = global_feed
        self._celebrities = celebrities
        self._lists = celebrity_lists

    async def tweet_changed(self, event: TweetChanged) -> int:
        """Writes a new tweet into the home timelines it belongs in, or takes a deleted one out of
        every timeline that may hold it, and tells the live streams; returns how many timelines
        took a new tweet (absent timelines are skipped: they are rebuilt when read)."""
        if event.deleted:
            await self._retract(event)
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

    async def _retract(self, event: TweetChanged) -> None:
        # Everyone who may hold it, whatever the reply filter decided: removing is harmless.
        await self._timelines.retract(
            event.tweet_id, list(dict.fromkeys([event.author_id, *event.mentioned_user_ids]))
        )
        async for followers in self._graph.follower_pages(event.author_id):
            await self._timelines.retract(event.tweet_id, followers)
        if self._lists is not None:
            await self._lists.retract(event.tweet_id, [event.author_id])
        if event.public:
            await self._global.announce(event.tweet_id, deleted=True)

    async def follow_changed(self, event: FollowChanged) -> None:
        """A follow merges the followee's recent tweets into the follower's timeline; an unfollow
        takes out every one of them that the timeline holds."""
        if not await self._timelines.exists(event.follower_id):
            return  # rebuilt from the follow graph when next read
        if self._celebrities is not None:
            await self._celebrities.follow_changed(event.follower_id, event.followee_id, event.following)
        if event.following:
            recent = await self._tweets.refs_by_authors(
                [event.followee_id], limit=min(self._timelines.max_entries, _ID_BATCH)
            )
            following = set(await self._graph.following(event.follower_id))
            await self._timelines.merge(
                event.follower_id,
                [r.tweet_id for r in recent if belongs_in_home(r, event.follower_id, following)],
            )
            return
        oldest = await self._timelines.oldest(event.follower_id)
        if oldest is None:
            return
        before: int | None = None
        while True:
            held = await self._tweets.ids_by_authors(
                [event.followee_id], before=before, after=oldest - 1, limit=_ID_BATCH
            )
            await self._timelines.remove(event.follower_id, held)
            if len(held) < _ID_BATCH:
                return
            before = held[-1]
