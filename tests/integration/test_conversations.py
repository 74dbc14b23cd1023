"""Conversations: the tweets above one up to the root, then the replies below as a tree in reading
order (the author's own replies first), paginated, with deleted tweets as placeholders."""

from __future__ import annotations

import grpc

from devstack.mesh import Mesh
from tests.helpers import Account, Stubs, http_call, rpc_error
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb


def conversation(
    stubs: Stubs, tweet_id: str, page_size: int = 0, page_token: str = "", max_depth: int = 0
) -> pb.GetConversationResponse:
    request = pb.GetConversationRequest(
        tweet_id=tweet_id, page_size=page_size, page_token=page_token, max_depth=max_depth
    )
    return stubs.tweets.GetConversation(request, timeout=10)


def shape(entries: list[pb.ConversationEntry]) -> list[tuple[str, int, str]]:
    """(text or "deleted", depth, parent) of each entry."""
    return [("deleted" if e.deleted else e.tweet.text, e.depth, e.parent_tweet_id) for e in entries]


def reply(stubs: Stubs, author: Account, text: str, to: pb.Tweet) -> pb.Tweet:
    return stubs.post(author, text, reply_to_tweet_id=to.tweet_id)


def delete(stubs: Stubs, author: Account, tweet: pb.Tweet) -> None:
    stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=tweet.tweet_id), metadata=author.auth, timeout=10)


def test_a_three_level_thread_with_a_deleted_middle_holds_together(stubs: Stubs, mesh: Mesh) -> None:
    ann, ben, cat = stubs.sign_up("conv_ann"), stubs.sign_up("conv_ben"), stubs.sign_up("conv_cat")
    root = stubs.post(ann, "root")
    middle = reply(stubs, ben, "middle", root)
    leaf = reply(stubs, cat, "leaf", middle)
    other = reply(stubs, cat, "another reply", root)
    own = reply(stubs, ann, "the author adds", root)  # later, but the author's own: first
    gone_leaf = reply(stubs, ben, "a reply nobody answered", other)
    delete(stubs, ben, middle)
    delete(stubs, ben, gone_leaf)

    # From the leaf: the root, the deleted middle as a placeholder, then the leaf itself.
    seen = conversation(stubs, leaf.tweet_id)
    assert shape(list(seen.ancestors)) == [("root", -2, ""), ("deleted", -1, root.tweet_id)]
    assert seen.ancestors[1].tweet_id == middle.tweet_id and not seen.ancestors[1].HasField("tweet")
    assert (seen.tweet.tweet.text, seen.tweet.depth, seen.tweet.parent_tweet_id) == (
        "leaf",
        0,
        middle.tweet_id,
    )
    assert not seen.replies

    # From the root: the author's own reply first, then the others oldest first, each followed by
    # its own replies; the deleted middle stays (it has a reply), the deleted leaf does not.
    expected = [
        ("the author adds", 1, root.tweet_id),
        ("deleted", 1, root.tweet_id),
        ("leaf", 2, middle.tweet_id),
        ("another reply", 1, root.tweet_id),
    ]
    whole = conversation(stubs, root.tweet_id)
    assert not whole.ancestors and whole.tweet.tweet.tweet_id == root.tweet_id
    assert shape(list(whole.replies)) == expected and not whole.next_page_token
    assert [e.tweet_id for e in whole.replies] == [
        own.tweet_id,
        middle.tweet_id,
        leaf.tweet_id,
        other.tweet_id,
    ]

    # One at a time, the pages walk the same order; the depth limit cuts the tree.
    walked, token = [], ""
    while True:
        page = conversation(stubs, root.tweet_id, page_size=1, page_token=token)
        walked += shape(list(page.replies))
        token = page.next_page_token
        if not token:
            break
    assert walked == expected
    assert shape(list(conversation(stubs, root.tweet_id, max_depth=1).replies)) == [
        e for e in expected if e[1] == 1
    ]

    # The deleted middle's own conversation: a placeholder between the root and the leaf.
    placeholder = conversation(stubs, middle.tweet_id)
    assert placeholder.tweet.deleted and placeholder.tweet.tweet_id == middle.tweet_id
    assert shape(list(placeholder.replies)) == [("leaf", 1, middle.tweet_id)]

    # A retweet's conversation is its original's.
    retweet = stubs.tweets.Retweet(
        pb.RetweetRequest(tweet_id=root.tweet_id), metadata=cat.auth, timeout=10
    ).tweet
    assert shape(list(conversation(stubs, retweet.tweet_id).replies)) == expected

    # Over HTTP through Envoy, the same.
    response = http_call(mesh.ports.envoy, "GET", f"/v1/tweets/{leaf.tweet_id}/conversation")
    assert response.status == 200
    body = response.json()
    assert [a.get("deleted", False) for a in body["ancestors"]] == [False, True]
    assert body["ancestors"][0]["tweet"]["text"] == "root" and body["tweet"]["tweet"]["text"] == "leaf"


def test_bad_conversation_requests_are_refused(stubs: Stubs, mesh: Mesh) -> None:
    author = stubs.sign_up("conv_bad")
    root = stubs.post(author, "asked about")
    reply(stubs, author, "a", root)
    reply(stubs, author, "b", root)
    for call, code, field in (
        (lambda: conversation(stubs, "1999999999999999999"), grpc.StatusCode.NOT_FOUND, "tweet_id"),
        (lambda: conversation(stubs, "nope"), grpc.StatusCode.INVALID_ARGUMENT, "tweet_id"),
        (
            lambda: conversation(stubs, root.tweet_id, max_depth=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_depth",
        ),
        (
            lambda: conversation(stubs, root.tweet_id, page_token="forged"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        ),
    ):
        error = rpc_error(call)
        assert error.code() == code and field in str(error.details()), (code, error.details())
    # A token is bound to its request: another depth cannot continue it.
    token = conversation(stubs, root.tweet_id, page_size=1).next_page_token
    assert token
    error = rpc_error(lambda: conversation(stubs, root.tweet_id, page_size=1, page_token=token, max_depth=2))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = http_call(mesh.ports.envoy, "GET", "/v1/tweets/1999999999999999999/conversation")
    assert missing.status == 404
