"""Peer clients on a fake stub: a follow list longer than one call takes is asked in chunks;
concurrent session lookups share one call, each caller getting its own tokens' answer or error."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from social.peers import AUTHORS_PER_CALL, TweetsPeer, UsersPeer
from tests.fakes import FakeTweetStub, FakeUserStub


async def test_many_authors_are_asked_in_chunks_and_merged_newest_first() -> None:
    peer = TweetsPeer(grpc.aio.insecure_channel("127.0.0.1:1"))
    stub = FakeTweetStub(max_authors=AUTHORS_PER_CALL)
    peer._stub = stub  # type: ignore[assignment]
    authors = list(range(1, 2 * AUTHORS_PER_CALL + 2))
    refs = await peer.refs_by_authors(authors, limit=5)
    assert stub.calls == [AUTHORS_PER_CALL, AUTHORS_PER_CALL, 1]
    assert [r.tweet_id for r in refs] == [10 * a for a in sorted(authors, reverse=True)[:5]]
    assert all(r.reply_to_author_id is None for r in refs)


def _users_peer(stub: FakeUserStub) -> UsersPeer:
    peer = UsersPeer(grpc.aio.insecure_channel("127.0.0.1:1"))
    peer._stub = stub  # type: ignore[assignment]
    return peer


async def test_lookups_made_during_a_call_share_the_next_and_each_gets_its_own_tokens() -> None:
    stub = FakeUserStub({"a": 1, "b": 2, "c": 3})
    peer = _users_peer(stub)
    stub.gate.clear()
    first = asyncio.create_task(peer.sessions(["a"]))
    for _ in range(10):
        await asyncio.sleep(0)
    assert stub.calls == [["a"]]
    second = asyncio.create_task(peer.sessions(["b", "c"]))
    third = asyncio.create_task(peer.sessions(["c", "unknown"]))
    for _ in range(10):
        await asyncio.sleep(0)
    assert stub.calls == [["a"]]  # the others wait for the call in flight
    stub.gate.set()
    found = await asyncio.gather(first, second, third)
    assert stub.calls == [["a"], ["b", "c", "unknown"]]
    assert [{t: s.user_id for t, s in f.items()} for f in found] == [{"a": 1}, {"b": 2, "c": 3}, {"c": 3}]


async def test_a_failed_call_is_the_error_of_every_lookup_it_carried_and_not_of_the_next() -> None:
    stub = FakeUserStub({"a": 1, "b": 2})
    peer = _users_peer(stub)
    stub.gate.clear()
    stub.failure = RuntimeError("users_svc unreachable")
    lookups = [asyncio.create_task(peer.sessions([t])) for t in ("a", "b")]
    for _ in range(10):
        await asyncio.sleep(0)
    stub.gate.set()
    for lookup in lookups:
        with pytest.raises(RuntimeError, match="unreachable"):
            await lookup
    stub.failure = None
    assert {t: s.user_id for t, s in (await peer.sessions(["b"])).items()} == {"b": 2}
