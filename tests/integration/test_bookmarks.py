"""Bookmarks: tweets a user keeps for later, listed to that user only, most recently bookmarked
first, paginated; a retweet stands for its original; deleted tweets leave the list."""

from __future__ import annotations

import grpc

from devstack.mesh import Mesh
from tests.helpers import Account, Stubs, http_call, rpc_error
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb


def bookmark(stubs: Stubs, user: Account, tweet_id: str) -> None:
    stubs.tweets.BookmarkTweet(pb.BookmarkTweetRequest(tweet_id=tweet_id), metadata=user.auth, timeout=10)


def unbookmark(stubs: Stubs, user: Account, tweet_id: str) -> None:
    stubs.tweets.UnbookmarkTweet(pb.UnbookmarkTweetRequest(tweet_id=tweet_id), metadata=user.auth, timeout=10)


def bookmarks(
    stubs: Stubs, user: Account, page_size: int = 0, page_token: str = ""
) -> pb.ListBookmarksResponse:
    request = pb.ListBookmarksRequest(page_size=page_size, page_token=page_token)
    return stubs.tweets.ListBookmarks(request, metadata=user.auth, timeout=10)


def ids(stubs: Stubs, user: Account) -> list[str]:
    return [t.tweet_id for t in bookmarks(stubs, user, page_size=100).tweets]


def test_bookmarks_are_the_owners_newest_first_and_paginated(stubs: Stubs, mesh: Mesh) -> None:
    reader, writer, other = stubs.sign_up("bm_reader"), stubs.sign_up("bm_writer"), stubs.sign_up("bm_other")
    old, new, third = (stubs.post(writer, text) for text in ("older tweet", "newer tweet", "third tweet"))
    retweet = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=third.tweet_id), metadata=other.auth).tweet

    bookmark(stubs, reader, new.tweet_id)
    bookmark(stubs, reader, old.tweet_id)  # bookmarked later: listed first, whatever the tweet's age
    bookmark(stubs, reader, new.tweet_id)  # twice: nothing changes
    bookmark(stubs, reader, retweet.tweet_id)  # the original is kept
    assert ids(stubs, reader) == [third.tweet_id, old.tweet_id, new.tweet_id]

    first = bookmarks(stubs, reader, page_size=2)
    rest = bookmarks(stubs, reader, page_size=2, page_token=first.next_page_token)
    assert [t.tweet_id for t in (*first.tweets, *rest.tweets)] == [third.tweet_id, old.tweet_id, new.tweet_id]
    assert not rest.next_page_token

    # Nobody else sees them, nor can continue the owner's list.
    assert ids(stubs, other) == []
    error = rpc_error(lambda: bookmarks(stubs, other, page_size=2, page_token=first.next_page_token))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in str(error.details())
    error = rpc_error(lambda: stubs.tweets.ListBookmarks(pb.ListBookmarksRequest(), timeout=10))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    # Removed (twice: nothing more changes), and through the retweet too.
    unbookmark(stubs, reader, old.tweet_id)
    unbookmark(stubs, reader, old.tweet_id)
    unbookmark(stubs, reader, retweet.tweet_id)
    assert ids(stubs, reader) == [new.tweet_id]

    # Over HTTP through Envoy: the same calls, the owner's list only with a token.
    auth = reader.token
    assert http_call(mesh.ports.envoy, "POST", f"/v1/tweets/{old.tweet_id}:bookmark", {}, auth).status == 200
    listed = http_call(mesh.ports.envoy, "GET", "/v1/bookmarks?page_size=10", token=auth).json()
    assert [t["tweet_id"] for t in listed["tweets"]] == [old.tweet_id, new.tweet_id]
    assert (
        http_call(mesh.ports.envoy, "POST", f"/v1/tweets/{old.tweet_id}:unbookmark", {}, auth).status == 200
    )
    assert http_call(mesh.ports.envoy, "GET", "/v1/bookmarks").status == 401


def test_a_deleted_tweet_leaves_every_bookmark_list_and_cannot_be_bookmarked(stubs: Stubs) -> None:
    author, reader = stubs.sign_up("bm_author"), stubs.sign_up("bm_keeper")
    doomed, kept = stubs.post(author, "soon gone"), stubs.post(author, "stays")
    for tweet in (kept, doomed):
        bookmark(stubs, reader, tweet.tweet_id)
    stubs.tweets.DeleteTweet(
        pb.DeleteTweetRequest(tweet_id=doomed.tweet_id), metadata=author.auth, timeout=10
    )
    assert ids(stubs, reader) == [kept.tweet_id]
    unbookmark(stubs, reader, doomed.tweet_id)  # nothing left to remove: fine
    for missing in (doomed.tweet_id, "1999999999999999999"):
        error = rpc_error(lambda missing=missing: bookmark(stubs, reader, missing))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.NOT_FOUND and "tweet_id" in str(error.details())
    error = rpc_error(lambda: unbookmark(stubs, reader, "1999999999999999999"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(lambda: bookmark(stubs, reader, "x"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ids(stubs, reader) == [kept.tweet_id]
