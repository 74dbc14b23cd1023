"""users_svc's follower lists in Redis (social.follower_lists): built from PostgreSQL on a miss,
kept in step with follows, unfollows and home timelines that come back.

Every write puts down what PostgreSQL says now and then reads PostgreSQL again, writing again
until the two readings agree: so the last write to land on a list is right whatever order
concurrent writers (other replicas, a build, a follow event and its retry) reach Redis in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from meshkit.errors import Unavailable
from social.follower_lists import BuildBusy, FollowerLists

# Rounds of write-then-check before a change still moving under it is left for a retry.
VERIFY_ROUNDS = 5
# Followers read from PostgreSQL, and added by one call of the fill script, at a time when a list
# is built (a call stays within a few milliseconds).
BUILD_PAGE = 2_000
# How long a call waits for a list another process is building.
WAIT_FOR_OTHER_BUILD_SECONDS = 3.0


class FollowGraphReads(Protocol):
    """What the lists are built and checked from (users_svc.storage.PostgresUserStore)."""

    async def followers(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        """(follow id, follower id) pairs, newest follow first, below the `before` follow id."""
        ...

    async def follow_state(self, follower_id: int, followee_id: int) -> tuple[bool, int]:
        """Whether follower_id follows followee_id, and followee_id's follower count."""
        ...

    async def followee_ids(self, user_id: int) -> set[int]:
        """Everyone user_id follows."""
        ...

    async def followers_count(self, user_id: int) -> int: ...


class FollowerListKeeper:
    def __init__(self, graph: FollowGraphReads, lists: FollowerLists) -> None:
        self._graph = graph
        self._lists = lists
        self._builds: dict[int, asyncio.Task[None]] = {}

    async def ensure(self, author_ids: Sequence[int]) -> None:
        """Builds the lists of `author_ids` that are missing; returns once each is built. A build
        runs to its end even if the caller stops waiting (the next caller finds it done)."""
        await asyncio.gather(*(self._ensure(a) for a in dict.fromkeys(author_ids)))

    async def _ensure(self, author_id: int) -> None:
        task = self._builds.get(author_id)
        if task is None:
            task = asyncio.create_task(self._build(author_id), name=f"follower list {author_id}")
            self._builds[author_id] = task
            task.add_done_callback(lambda _: self._builds.pop(author_id, None))
        await asyncio.shield(task)

    async def _build(self, author_id: int) -> None:
        waited_until = time.monotonic() + WAIT_FOR_OTHER_BUILD_SECONDS
        while True:
            followers = await self._graph.followers_count(author_id)
            try:
                gen = await self._lists.begin_build(author_id, followers)
                break
            except BuildBusy:
                if time.monotonic() > waited_until:
                    raise Unavailable(
                        f"the follower list of {author_id} is being built elsewhere; retry later",
                        reason="FOLLOWER_LIST_BUILDING",
                    ) from None
                await asyncio.sleep(0.05)
        if gen is None:
            return  # built meanwhile
        before: int | None = None
        while True:
            page = await self._graph.followers(author_id, before, BUILD_PAGE)
            if page:
                await self._lists.fill(author_id, gen, [follower for _, follower in page])
            if len(page) < BUILD_PAGE:
                break
            before = page[-1][0]
        await self._lists.finish_build(author_id, gen)

    async def sync(self, follower_id: int, followee_id: int) -> None:
        """The followee's list made to agree with the follow graph about this follower."""
        state = await self._graph.follow_state(follower_id, followee_id)
        for _ in range(VERIFY_ROUNDS):
            await self._lists.sync(followee_id, follower_id, *state)
            now = await self._graph.follow_state(follower_id, followee_id)
            if now == state:
                return
            state = now
        raise Unavailable(
            "the follow kept changing while its follower list was written; retry", reason="FOLLOWS_CHANGING"
        )

    async def join(self, user_id: int) -> None:
        """A user whose home timeline was just made joins the lists of everyone they follow."""
        following = await self._graph.followee_ids(user_id)
        joined: set[int] = set()
        for _ in range(VERIFY_ROUNDS):
            await self._lists.join(user_id, sorted(following - joined), joining=True)
            await self._lists.join(user_id, sorted(joined - following), joining=False)
            joined = following
            following = await self._graph.followee_ids(user_id)
            if following == joined:
                return
        raise Unavailable(
            "the user's follows kept changing while they joined follower lists; retry",
            reason="FOLLOWS_CHANGING",
        )
