"""Edits: the author changes a tweet's text (and media) within the edit window, at most EDIT_MAX
times; the earlier versions are kept; search, hashtags and mentions follow the new text; open
streams get an update event; timelines, retweets and quotes show the current version; every
refusal has its status and reason and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2

from devstack.mesh import Mesh
from meshkit.rpc_details import error_details
from tests.helpers import Account, LiveStream, Stubs, eventually, field_violations, http_call, rpc_error
from tests.media_samples import encode, picture
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb


def edit(stubs: Stubs, author: Account, tweet_id: str, text: str, **kwargs: Any) -> pb.Tweet:
    request = pb.EditTweetRequest(tweet_id=tweet_id, text=text, **kwargs)
    return stubs.tweets.EditTweet(request, metadata=author.auth, timeout=10).tweet


def get(stubs: Stubs, tweet_id: str) -> pb.Tweet:
    return stubs.tweets.GetTweet(pb.GetTweetRequest(tweet_id=tweet_id), timeout=10).tweet


def history(stubs: Stubs, tweet_id: str) -> list[pb.TweetVersion]:
    request = pb.GetTweetHistoryRequest(tweet_id=tweet_id)
    return list(stubs.tweets.GetTweetHistory(request, timeout=10).versions)


def search(stubs: Stubs, query: str) -> list[str]:
    request = pb.SearchTweetsRequest(query=query, page_size=100)
    return [t.tweet_id for t in stubs.tweets.SearchTweets(request, timeout=10).tweets]


def tagged(stubs: Stubs, tag: str) -> list[str]:
    request = pb.ListHashtagTweetsRequest(tag=tag, page_size=100)
    return [t.tweet_id for t in stubs.tweets.ListHashtagTweets(request, timeout=10).tweets]


def mentioning(stubs: Stubs, user: Account) -> list[str]:
    request = pb.ListMentionsRequest(user_id=user.user_id, page_size=100)
    return [t.tweet_id for t in stubs.tweets.ListMentions(request, timeout=10).tweets]


def reason(error: grpc.RpcError) -> str:
    return next((i.reason for i in error_details(error, error_details_pb2.ErrorInfo)), "")


def refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    error = rpc_error(call)
    return error.code(), reason(error)


def test_an_edit_changes_the_text_everywhere_and_keeps_the_earlier_version(stubs: Stubs) -> None:
    author, follower, retweeter = stubs.sign_up("editor"), stubs.sign_up("reader"), stubs.sign_up("sharer")
    stubs.follow(follower, author)
    stubs.home(follower)  # fan-out writes only home timelines that exist
    word = author.user.handle.replace("_", "")  # a word no other tweet has
    original = stubs.post(author, f"{word}x marmalade typo #draftedit{word}")
    retweet = stubs.tweets.Retweet(
        pb.RetweetRequest(tweet_id=original.tweet_id), metadata=retweeter.auth
    ).tweet
    quote = stubs.post(retweeter, "look", quote_tweet_id=original.tweet_id)
    eventually(lambda: original.tweet_id in stubs.home_ids(follower))
    assert stubs.home(follower).tweets[0].text == original.text  # the old text is in the caches now
    assert search(stubs, "marmalade") == [original.tweet_id]

    stream = LiveStream(stubs.timeline, follower)
    global_stream = LiveStream(stubs.timeline, None)
    try:
        stream.next_event(timeout=10)
        global_stream.next_event(timeout=10)
        edited = edit(stubs, author, original.tweet_id, f"{word}x jam fixed #finaledit{word}")
        update = stream._next("update", timeout=15)
        global_update = global_stream._next("update", timeout=15)
    finally:
        stream.close()
        global_stream.close()

    new_text = f"{word}x jam fixed #finaledit{word}"
    assert edited.text == new_text and edited.edit_count == 1 and edited.HasField("edit_time")
    assert edited.edit_time.ToDatetime() >= edited.create_time.ToDatetime()
    assert edited.tweet_id == original.tweet_id and edited.create_time == original.create_time
    # The open streams heard of it, with the tweet as it is now.
    assert update.tweet_id == original.tweet_id and update.text == new_text and update.edit_count == 1
    assert global_update.text == new_text
    # Every read shows the current version: the tweet, the follower's timeline (from the caches),
    # the retweet, the quote, the author's timeline.
    assert get(stubs, original.tweet_id).text == new_text
    assert stubs.home(follower).tweets[0].text == new_text
    assert get(stubs, retweet.tweet_id).retweeted_tweet.text == new_text
    assert get(stubs, quote.tweet_id).quoted_tweet.text == new_text
    timeline = stubs.tweets.ListUserTweets(pb.ListUserTweetsRequest(user_id=author.user_id), timeout=10)
    assert timeline.tweets[0].text == new_text
    # Search and hashtags follow the new text.
    assert search(stubs, "marmalade") == []
    assert search(stubs, "jam") and original.tweet_id in search(stubs, f"{word}x jam")
    assert tagged(stubs, f"draftedit{word}") == []
    assert tagged(stubs, f"finaledit{word}") == [original.tweet_id]
    assert list(edited.hashtags) == [f"finaledit{word}"]
    # The earlier version is kept: newest first, each with its time.
    versions = history(stubs, original.tweet_id)
    assert [v.text for v in versions] == [new_text, original.text]
    assert versions[0].time == edited.edit_time and versions[1].time == original.create_time
    # A retweet's history is its original's.
    assert [v.text for v in history(stubs, retweet.tweet_id)] == [new_text, original.text]


def test_mentions_follow_the_new_text(stubs: Stubs) -> None:
    author, first, second = stubs.sign_up("mentioner"), stubs.sign_up("first"), stubs.sign_up("second")
    fan = stubs.sign_up("fan")
    stubs.follow(fan, author)
    for viewer in (first, second, fan):
        stubs.home(viewer)  # fan-out writes only home timelines that exist
    tweet = stubs.post(author, f"hello @{first.user.handle} and @{fan.user.handle}")
    assert tweet.tweet_id in mentioning(stubs, first)
    eventually(lambda: tweet.tweet_id in stubs.home_ids(first) and tweet.tweet_id in stubs.home_ids(fan))
    edited = edit(stubs, author, tweet.tweet_id, f"hello @{second.user.handle} instead")
    assert [m.handle for m in edited.mentions] == [second.user.handle.lower()]
    assert tweet.tweet_id not in mentioning(stubs, first)
    assert tweet.tweet_id in mentioning(stubs, second)
    # Home timelines follow too: the newly mentioned gets it, the one no longer mentioned loses it,
    # a follower no longer mentioned keeps it (it is in their home anyway).
    eventually(lambda: tweet.tweet_id in stubs.home_ids(second))
    eventually(lambda: tweet.tweet_id not in stubs.home_ids(first))
    assert tweet.tweet_id in stubs.home_ids(fan)


def test_a_reply_stays_a_reply_and_its_replied_to_author_stays_told(stubs: Stubs) -> None:
    author, replier = stubs.sign_up("asked"), stubs.sign_up("answers")
    question = stubs.post(author, "a question")
    reply = stubs.post(replier, "an answr", reply_to_tweet_id=question.tweet_id)
    edited = edit(stubs, replier, reply.tweet_id, "an answer")
    assert edited.reply_to_tweet_id == question.tweet_id and edited.text == "an answer"
    assert reply.tweet_id in mentioning(stubs, author)  # the replied-to author is still mentioned
    assert get(stubs, question.tweet_id).reply_count == 1


def test_at_most_edit_max_edits_and_a_retry_edits_once(stubs: Stubs) -> None:
    author = stubs.sign_up("fiveedits")
    tweet = stubs.post(author, "version 0")
    first = edit(stubs, author, tweet.tweet_id, "version 1", request_id="edit-1")
    again = edit(stubs, author, tweet.tweet_id, "version 1 (retried)", request_id="edit-1")
    assert first.edit_count == again.edit_count == 1 and again.text == "version 1"
    for n in range(2, 6):
        assert edit(stubs, author, tweet.tweet_id, f"version {n}").edit_count == n
    code, why = refused(lambda: edit(stubs, author, tweet.tweet_id, "version 6"))
    assert (code, why) == (grpc.StatusCode.FAILED_PRECONDITION, "EDIT_LIMIT_REACHED")
    # A retry of an edit that was made still answers (it changes nothing); someone else's call with
    # the same key is not a retry.
    assert edit(stubs, author, tweet.tweet_id, "whatever", request_id="edit-1").text == "version 5"
    other = stubs.sign_up("notretry")
    code, why = refused(lambda: edit(stubs, other, tweet.tweet_id, "whatever", request_id="edit-1"))
    assert (code, why) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_AUTHOR")
    assert [v.text for v in history(stubs, tweet.tweet_id)] == [f"version {n}" for n in range(5, -1, -1)]


def test_past_the_edit_window_an_edit_is_refused(mesh: Mesh, stubs: Stubs) -> None:
    author = stubs.sign_up("toolate")
    tweet = stubs.post(author, "posted a moment ago")
    # tweets_svc with a window of zero: every tweet is past it (no waiting for 30 minutes).
    mesh.start_service("tweets", {"EDIT_WINDOW_SECONDS": "0"})
    try:
        code, why = refused(lambda: edit(stubs, author, tweet.tweet_id, "changed my mind"))
    finally:
        mesh.start_service("tweets")
    assert (code, why) == (grpc.StatusCode.FAILED_PRECONDITION, "EDIT_WINDOW_CLOSED")
    assert get(stubs, tweet.tweet_id).text == "posted a moment ago"
    assert len(history(stubs, tweet.tweet_id)) == 1


def test_refused_edits_change_nothing(stubs: Stubs) -> None:
    author, other = stubs.sign_up("owner"), stubs.sign_up("intruder")
    tweet = stubs.post(author, "mine #mine")
    retweet = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=tweet.tweet_id), metadata=other.auth).tweet
    doomed = stubs.post(author, "soon gone")
    stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=doomed.tweet_id), metadata=author.auth)
    before = stubs.snapshot(author, other)

    assert refused(lambda: edit(stubs, other, tweet.tweet_id, "hijacked")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_AUTHOR",
    )
    assert refused(lambda: edit(stubs, other, retweet.tweet_id, "a retweet has no text")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "RETWEET_NOT_EDITABLE",
    )
    assert refused(lambda: edit(stubs, author, doomed.tweet_id, "back"))[0] == grpc.StatusCode.NOT_FOUND
    assert refused(lambda: edit(stubs, author, "999999999999", "nothing"))[0] == grpc.StatusCode.NOT_FOUND
    for text, field in (("", "text"), ("   ", "text"), ("x" * 281, "text"), ("bad\x00byte", "text")):
        error = rpc_error(lambda text=text: edit(stubs, author, tweet.tweet_id, text))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, text
        assert field in field_violations(error) or field in str(error.details()), text
    error = rpc_error(lambda: edit(stubs, author, "not-an-id", "text"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "tweet_id" in field_violations(error)
    # History of a deleted tweet is gone with it.
    assert rpc_error(lambda: history(stubs, doomed.tweet_id)).code() == grpc.StatusCode.NOT_FOUND

    assert stubs.snapshot(author, other) == before
    assert get(stubs, tweet.tweet_id).edit_count == 0
    assert tagged(stubs, "mine")[0] == tweet.tweet_id


def test_an_edit_changes_the_media_and_history_keeps_the_old_ones(stubs: Stubs) -> None:
    author, other = stubs.sign_up("photog"), stubs.sign_up("otherphotog")
    first = stubs.upload(author, encode(picture((40, 30)), "PNG"), "image/png")
    second = stubs.upload(author, encode(picture((50, 20)), "PNG"), "image/png")
    theirs = stubs.upload(other, encode(picture((10, 10)), "PNG"), "image/png")
    tweet = stubs.post(author, "one picture", media_ids=[first.media_id])

    kept = edit(stubs, author, tweet.tweet_id, "same picture, new words")
    assert [m.media_id for m in kept.media] == [first.media_id]
    swapped = edit(
        stubs, author, tweet.tweet_id, "", media_ids=[second.media_id], alt_texts={second.media_id: "wide"}
    )
    assert swapped.text == "" and [(m.media_id, m.alt_text) for m in swapped.media] == [
        (second.media_id, "wide")
    ]
    versions = history(stubs, tweet.tweet_id)
    assert [[m.media_id for m in v.media] for v in versions] == [
        [second.media_id],
        [first.media_id],
        [first.media_id],
    ]
    # Someone else's media, or no text and no media left: refused, nothing changed.
    error = rpc_error(lambda: edit(stubs, author, tweet.tweet_id, "steal", media_ids=[theirs.media_id]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = rpc_error(lambda: edit(stubs, author, tweet.tweet_id, "", clear_media=True))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert get(stubs, tweet.tweet_id).edit_count == 2
    cleared = edit(stubs, author, tweet.tweet_id, "words only now", clear_media=True)
    assert not cleared.media and cleared.edit_count == 3


def test_edits_through_envoy(mesh: Mesh, stubs: Stubs) -> None:
    author, other = stubs.sign_up("httpedit"), stubs.sign_up("httpother")
    tweet = stubs.post(author, "said over http")
    port = mesh.ports.envoy
    path = f"/v1/tweets/{tweet.tweet_id}"

    answer = http_call(port, "PATCH", path, {"text": "edited over http"}, author.token)
    assert answer.status == 200, answer.body
    body = answer.json()["tweet"]
    assert body["text"] == "edited over http" and body["edit_count"] == 1 and "edit_time" in body
    shown = http_call(port, "GET", f"{path}/history")
    assert shown.status == 200
    assert [v["text"] for v in shown.json()["versions"]] == ["edited over http", "said over http"]

    assert http_call(port, "PATCH", path, {"text": "mine now"}, other.token).status == 403
    assert http_call(port, "PATCH", path, {"text": "anyone?"}).status == 401
    assert http_call(port, "PATCH", path, {"text": ""}, author.token).status == 400
    assert http_call(port, "PATCH", "/v1/tweets/999999999999", {"text": "x"}, author.token).status == 404
    assert http_call(port, "GET", "/v1/tweets/999999999999/history").status == 404
    assert get(stubs, tweet.tweet_id).text == "edited over http"
