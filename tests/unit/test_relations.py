"""Blocks and mutes as rules (social.rules) and as every service reads them (social.relations),
on in-memory fakes: what each relation hides where, what it forbids, and where the answer comes
from when the cache has none or is down."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import grpc
import pytest
from argon2 import PasswordHasher

from meshkit.pagination import PageTokens
from social import Relation, Relations, interaction_refused, is_hidden
from tests.fakes import FakeRelationsCache
from users_svc.passwords import PasswordHashing
from users_svc.service import Users

ANN, BOB, CAT = 1, 2, 3


@pytest.mark.parametrize(
    ("relation", "anywhere", "where_muting_applies"),
    [
        (Relation.NONE, False, False),
        (Relation.BLOCKS, True, True),
        (Relation.BLOCKED_BY, True, True),
        (Relation.MUTES, False, True),
        (Relation.BLOCKS | Relation.MUTES, True, True),
    ],
)
def test_what_a_relation_hides(relation: Relation, anywhere: bool, where_muting_applies: bool) -> None:
    relations = {BOB: relation}
    assert is_hidden(relations, [BOB], muting=False) is anywhere
    assert is_hidden(relations, [BOB], muting=True) is where_muting_applies
    # A retweet is hidden when either its retweeter or its original's author is.
    assert is_hidden(relations, [CAT, BOB], muting=True) is where_muting_applies
    assert not is_hidden(relations, [CAT], muting=True)


def test_what_a_relation_forbids() -> None:
    assert interaction_refused(Relation.NONE, "like") is None
    assert interaction_refused(Relation.MUTES, "like") is None
    blocked = interaction_refused(Relation.BLOCKED_BY, "like")
    assert blocked is not None and blocked.code == grpc.StatusCode.PERMISSION_DENIED
    assert blocked.reason == "BLOCKED" and "like" in blocked.message
    blocking = interaction_refused(Relation.BLOCKS | Relation.BLOCKED_BY, "follow")
    assert blocking is not None and blocking.reason == "BLOCKED"
    unblock_first = interaction_refused(Relation.BLOCKS, "reply to")
    assert unblock_first is not None and unblock_first.code == grpc.StatusCode.FAILED_PRECONDITION
    assert unblock_first.reason == "YOU_BLOCK" and "unblock" in unblock_first.message


class Owner:
    """users_svc's answer: reads the truth and refills the cache, as ListRelations does."""

    def __init__(self, cache: FakeRelationsCache, truth: dict[int, dict[int, Relation]]) -> None:
        self._cache = cache
        self._truth = truth
        self.asked = 0

    async def load(self, viewer: int, others: Sequence[int] | None) -> dict[int, Relation]:
        self.asked += 1
        held = self._truth.get(viewer, {})
        await self._cache.write(viewer, 1, held)
        return dict(held) if others is None else {o: held[o] for o in others if o in held}


async def test_the_cache_answers_and_a_miss_is_asked_of_the_owner_once() -> None:
    cache = FakeRelationsCache()
    owner = Owner(cache, {ANN: {BOB: Relation.BLOCKS}})
    relations = Relations(cache, owner.load)
    assert await relations.among(ANN, [BOB, CAT, BOB]) == {BOB: Relation.BLOCKS}
    assert await relations.among(ANN, [CAT]) == {}
    assert owner.asked == 1  # the second read was the cache's, "nothing" included
    assert await relations.with_account(ANN, BOB) is Relation.BLOCKS


async def test_every_relation_of_a_viewer_comes_from_the_cache_once_filled() -> None:
    cache = FakeRelationsCache()
    owner = Owner(cache, {ANN: {BOB: Relation.BLOCKS, CAT: Relation.MUTES}})
    relations = Relations(cache, owner.load)
    assert await relations.all(ANN) == {BOB: Relation.BLOCKS, CAT: Relation.MUTES}
    assert await relations.all(ANN) == {BOB: Relation.BLOCKS, CAT: Relation.MUTES}
    assert await relations.all(BOB) == {}
    assert owner.asked == 2


async def test_nobody_relates_to_an_anonymous_viewer_or_to_itself() -> None:
    cache = FakeRelationsCache()
    owner = Owner(cache, {})
    relations = Relations(cache, owner.load)
    assert await relations.among(None, [BOB]) == {}
    assert await relations.among(ANN, [ANN]) == {}
    assert owner.asked == 0


async def test_a_cache_that_is_down_sends_every_read_to_the_owner() -> None:
    cache = FakeRelationsCache()
    owner = Owner(cache, {ANN: {BOB: Relation.MUTES}})
    relations = Relations(cache, owner.load)
    cache.down = True
    assert await relations.among(ANN, [BOB]) == {BOB: Relation.MUTES}
    assert await relations.among(ANN, [BOB]) == {BOB: Relation.MUTES}
    assert owner.asked == 2


class ChangingStore:
    """users_svc's store whose relations change (version 1 -> 2) between the read of a refill and
    its check, as a block committed meanwhile would."""

    def __init__(self, versions: list[int]) -> None:
        self._versions = versions

    async def relations_of(self, user_id: int) -> tuple[int, dict[int, Relation]]:
        return self._versions[0], {BOB: Relation.MUTES}

    async def relations_version(self, user_id: int) -> int:
        return self._versions[-1]


@pytest.mark.parametrize(("versions", "cached"), [([1], True), ([1, 2], False)])
async def test_a_refill_raced_by_a_change_leaves_no_stale_entry(versions: list[int], cached: bool) -> None:
    cache = FakeRelationsCache()
    users = Users(
        store=ChangingStore(versions),  # type: ignore[arg-type]
        sessions=None,  # type: ignore[arg-type]
        tweet_counts=None,  # type: ignore[arg-type]
        hashing=PasswordHashing(
            PasswordHasher(memory_cost=8, time_cost=1, parallelism=1), limit=1, max_wait_seconds=1
        ),
        page_tokens=PageTokens("test"),
        token_ttl=timedelta(hours=1),
        mailer=None,  # type: ignore[arg-type]
        relations_cache=cache,
    )
    assert await users.relations_among(ANN, [BOB, CAT]) == {BOB: Relation.MUTES}
    assert (ANN in cache.entries) is cached
