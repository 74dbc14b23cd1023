"""Peer clients on a fake stub: a follow list longer than one call takes is asked in chunks."""

from __future__ import annotations

import grpc

from social.peers import AUTHORS_PER_CALL, TweetsPeer
from tests.fakes import FakeTweetStub


async def test_many_authors_are_asked_in_chunks_and_merged_newest_first() -> None:
    peer = TweetsPeer(grpc.aio.insecure_channel("127.0.0.1:1"))
    stub = FakeTweetStub(max_authors=AUTHORS_PER_CALL)
    peer._stub = stub  # type: ignore[assignment]
    authors = list(range(1, 2 * AUTHORS_PER_CALL + 2))
    refs = await peer.refs_by_authors(authors, limit=5)
    assert stub.calls == [AUTHORS_PER_CALL, AUTHORS_PER_CALL, 1]
    assert [r.tweet_id for r in refs] == [10 * a for a in sorted(authors, reverse=True)[:5]]
    assert all(r.reply_to_author_id is None for r in refs)
