"""A home timeline as the owners know it (PostgreSQL, through users_svc and tweets_svc), and its
Redis window rebuilt from them.

timeline_svc reads from the owners past the Redis window and rebuilds a window that expired (a
user back after a while); fan-out rebuilds the follower's window when a follow changes, since a
follow changes more than the followee's own tweets (other people's replies to the followee, and
tweets that mention the follower, which stay) and since several fan-out workers may apply a follow
and the unfollow after it in either order. A rebuild reads the follow graph as it is when it runs,
so whichever rebuild runs last leaves the window matching the final follow state; a rebuild
overtaken by a newer one leaves the window to it (social.timelines, `begin_rebuild`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from social.celebrities import MERGED_AT_READ, State
from social.rules import TweetRef, belongs_in_home

# ListTweetIdsByAuthors and ListMentionIds answer at most this many ids per call.
ID_BATCH = 1000


class FollowGraph(Protocol):
    async def following(self, user_id: int) -> list[int]: ...
    async def join_follower_lists(self, user_id: int) -> None:
        """The user's home timeline exists now: fan-out is to find them in the follower lists of
        whom they follow (users_svc; social.follower_lists)."""
        ...


class TweetRefs(Protocol):
    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]: ...
    async def mention_ids(
        self, user_id: int, *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]: ...


class Registry(Protocol):
    async def states(self, author_ids: Sequence[int]) -> dict[int, State]: ...


class RebuildTarget(Protocol):
    """Home timelines in Redis (social.timelines.TimelineStore)."""

    max_entries: int

    async def begin_rebuild(self, user_id: int) -> bytes: ...
    async def finish_rebuild(
        self,
        user_id: int,
        tweet_ids: Iterable[int],
        celebrities: Iterable[int],
        begun: bytes,
        *,
        complete: bool = False,
    ) -> bool: ...


class HomeSource:
    """Home timelines from the owners; `registry` names the celebrities a rebuilt window merges at
    read time (None: no hybrid fan-out)."""

    def __init__(
        self, graph: FollowGraph, tweets: TweetRefs, timelines: RebuildTarget, registry: Registry | None
    ) -> None:
        self._graph = graph
        self._tweets = tweets
        self._timelines = timelines
        self._registry = registry

    async def from_owners(self, viewer: int, before: int | None, limit: int) -> list[int]:
        """The newest `limit` ids of the viewer's home below `before`: the tweets of whom they follow
        and their own that belong (belongs_in_home), and those mentioning them."""
        following = await self._graph.following(viewer)
        followed = set(following)
        kept: list[int] = []
        cursor = before
        batch = min(max(limit, 100), ID_BATCH)
        while len(kept) < limit:
            refs = await self._tweets.refs_by_authors([*following, viewer], before=cursor, limit=batch)
            kept.extend(r.tweet_id for r in refs if belongs_in_home(r, viewer, followed))
            if len(refs) < batch:
                break
            cursor = refs[-1].tweet_id
        mentions = await self._tweets.mention_ids(viewer, before=before, limit=min(limit, ID_BATCH))
        return sorted({*kept[:limit], *mentions}, reverse=True)[:limit]

    async def rebuild(self, viewer: int) -> bool:
        """Recreates the viewer's window from the owners; False when a newer rebuild overtook it."""
        return await self.finish(viewer, await self._timelines.begin_rebuild(viewer))

    async def finish(self, viewer: int, begun: bytes) -> bool:
        """The second half of a rebuild begun (`begun`: what begin_rebuild answered). The window
        exists, empty, before the owners are asked, so fan-out writes landing meanwhile are kept;
        the viewer joins the follower lists then too (a tweet fanned out from then on reaches the
        window, one committed before is read below), and the registry is read after it exists: a
        promotion from then on marks it itself."""
        await self._graph.join_follower_lists(viewer)
        celebrities: list[int] = []
        if self._registry is not None:
            states = await self._registry.states(await self._graph.following(viewer))
            celebrities = [a for a, state in states.items() if state in MERGED_AT_READ]
        recent = await self.from_owners(viewer, None, min(self._timelines.max_entries, ID_BATCH))
        # Never marked COMPLETE: what reaches a home timeline after its rebuild depends on the
        # follower lists, so a page that reaches below its oldest id still asks the owners.
        return await self._timelines.finish_rebuild(viewer, recent, celebrities, begun)
