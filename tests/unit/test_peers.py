"""Peer clients on a fake stub: a follow list longer than one call takes is asked in chunks."""

from __future__ import annotations

from typing import Any

import grpc

from meshkit.peers import AUTHORS_PER_CALL, TweetsPeer
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb


class FakeTweetStub:
    """Each author i has one tweet, id 10 * i; replies to nobody."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def ListTweetIdsByAuthors(self, request: pb.ListTweetIdsByAuthorsRequest) -> Any:
        assert len(request.author_ids) <= AUTHORS_PER_CALL
        self.calls.append(len(request.author_ids))
        refs = sorted((int(a) * 10 for a in request.author_ids), reverse=True)[: request.limit]
        return pb.ListTweetIdsByAuthorsResponse(
            tweets=[pb.TweetRef(tweet_id=str(t), author_id=str(t // 10)) for t in refs]
        )


async def test_many_authors_are_asked_in_chunks_and_merged_newest_first() -> None:
    peer = TweetsPeer(grpc.aio.insecure_channel("127.0.0.1:1"))
    stub = FakeTweetStub()
    peer._stub = stub  # type: ignore[assignment]
    authors = list(range(1, 2 * AUTHORS_PER_CALL + 2))
    refs = await peer.refs_by_authors(authors, limit=5)
    assert stub.calls == [AUTHORS_PER_CALL, AUTHORS_PER_CALL, 1]
    assert [r.tweet_id for r in refs] == [10 * a for a in sorted(authors, reverse=True)[:5]]
    assert all(r.reply_to_author_id is None for r in refs)
