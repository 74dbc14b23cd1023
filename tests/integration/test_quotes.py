"""Quote tweets: a tweet that shows another (hydrated, or marked deleted), counted on the quoted
tweet, listed under it, fanned out as any tweet and told to the quoted author as a mention."""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from devstack.mesh import Mesh
from social import TWEETS_STREAM
from tests.helpers import (
    Account,
    LiveStream,
    Stubs,
    eventually,
    fanned_out,
    http_call,
    redis_client,
    rpc_error,
)
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb


def quote(stubs: Stubs, author: Account, text: str, quoted: str) -> pb.Tweet:
    return stubs.post(author, text, quote_tweet_id=quoted)


def get(stubs: Stubs, tweet_id: str) -> pb.Tweet:
    return stubs.tweets.GetTweet(pb.GetTweetRequest(tweet_id=tweet_id), timeout=10).tweet


def quotes(stubs: Stubs, tweet_id: str, page_size: int = 100, page_token: str = "") -> pb.ListQuotesResponse:
    request = pb.ListQuotesRequest(tweet_id=tweet_id, page_size=page_size, page_token=page_token)
    return stubs.tweets.ListQuotes(request, timeout=10)


def test_a_quote_shows_the_quoted_tweet_and_counts_on_it(stubs: Stubs) -> None:
    author, quoter = stubs.sign_up("quoted"), stubs.sign_up("quoter")
    original = stubs.post(author, "a thought worth quoting #quotable")
    first = quote(stubs, quoter, "so true", original.tweet_id)
    second = quote(stubs, quoter, "still true", original.tweet_id)

    assert first.quote_tweet_id == original.tweet_id
    assert first.quote_status == pb.QUOTE_STATUS_AVAILABLE
    assert first.quoted_tweet.text == "a thought worth quoting #quotable"
    assert first.quoted_tweet.author.handle == author.user.handle
    assert get(stubs, original.tweet_id).quote_count == 2
    page = quotes(stubs, original.tweet_id, page_size=1)
    assert [t.tweet_id for t in page.tweets] == [second.tweet_id]  # newest first
    rest = quotes(stubs, original.tweet_id, page_size=1, page_token=page.next_page_token)
    assert [t.tweet_id for t in rest.tweets] == [first.tweet_id] and not rest.next_page_token
    # A retweet of the quote shows the quote with its quoted tweet.
    retweet = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=first.tweet_id), metadata=author.auth).tweet
    assert retweet.retweeted_tweet.quoted_tweet.tweet_id == original.tweet_id


def test_quoting_a_retweet_quotes_its_original_and_a_quote_of_a_quote_is_one_level_deep(
    stubs: Stubs,
) -> None:
    author, other = stubs.sign_up("deep"), stubs.sign_up("deeper")
    original = stubs.post(author, "the original")
    retweet = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=original.tweet_id), metadata=other.auth).tweet
    quoted_retweet = quote(stubs, other, "quoting the retweet", retweet.tweet_id)
    assert quoted_retweet.quote_tweet_id == original.tweet_id

    outer = quote(stubs, author, "quoting the quote", quoted_retweet.tweet_id)
    assert outer.quoted_tweet.tweet_id == quoted_retweet.tweet_id
    inner = outer.quoted_tweet
    assert inner.quote_tweet_id == original.tweet_id
    assert inner.quote_status == pb.QUOTE_STATUS_UNSPECIFIED and not inner.HasField("quoted_tweet")


def test_a_quote_of_a_deleted_tweet_stays_and_says_so(stubs: Stubs) -> None:
    author, quoter = stubs.sign_up("gone"), stubs.sign_up("stays")
    original = stubs.post(author, "soon deleted")
    kept = quote(stubs, quoter, "I quoted it", original.tweet_id)
    doomed = quote(stubs, quoter, "and again", original.tweet_id)
    stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=doomed.tweet_id), metadata=quoter.auth)
    assert get(stubs, original.tweet_id).quote_count == 1  # the deleted quote counts no more

    stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=original.tweet_id), metadata=author.auth)
    shown = get(stubs, kept.tweet_id)
    assert shown.quote_tweet_id == original.tweet_id
    assert shown.quote_status == pb.QUOTE_STATUS_DELETED and not shown.HasField("quoted_tweet")
    assert [t.tweet_id for t in quotes(stubs, original.tweet_id).tweets] == [kept.tweet_id]
    # Nothing new may quote it.
    error = rpc_error(lambda: quote(stubs, quoter, "too late", original.tweet_id))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "quote_tweet_id" in str(error.details())


def decoded(entry: tuple[bytes, dict[bytes, bytes]]) -> pb.TweetEvent | None:
    """A tweets' event, or None for what other tests put on the stream (poison they test with)."""
    try:
        return pb.TweetEvent.FromString(entry[1][b"data"])
    except (KeyError, DecodeError):
        return None


def test_a_quote_reaches_followers_and_the_quoted_author_as_any_tweet(stubs: Stubs, mesh: Mesh) -> None:
    author, quoter, follower = stubs.sign_up("q_author"), stubs.sign_up("q_quoter"), stubs.sign_up("q_fan")
    stubs.follow(follower, quoter)
    for viewer in (author, follower):
        stubs.home(viewer)  # fan-out writes only home timelines that exist
    original = stubs.post(author, "read me")
    # Fanned out before the stream opens: the stream's first tweet is then the quote.
    eventually(lambda: fanned_out(redis_client(mesh.redis_url), TWEETS_STREAM))
    stream = LiveStream(stubs.timeline, author)
    try:
        stream.next_event(timeout=10)
        posted = quote(stubs, quoter, "look at this", original.tweet_id)
        # The quoted author hears of it live, and in their mentions, though they follow nobody.
        arrived = stream.next_tweet(timeout=15)
    finally:
        stream.close()
    assert arrived.tweet_id == posted.tweet_id and arrived.quoted_tweet.tweet_id == original.tweet_id
    mentions = stubs.tweets.ListMentions(pb.ListMentionsRequest(user_id=author.user_id)).tweets
    assert [t.tweet_id for t in mentions] == [posted.tweet_id]
    eventually(lambda: posted.tweet_id in [t.tweet_id for t in stubs.home(follower).tweets])
    assert stubs.home(follower).tweets[0].quoted_tweet.text == "read me"
    # Over HTTP: the quote and its quoted tweet, and the list of quotes.
    shown = http_call(mesh.ports.envoy, "GET", f"/v1/tweets/{posted.tweet_id}").json()["tweet"]
    assert (shown["quote_status"], shown["quoted_tweet"]["tweet_id"]) == (
        "QUOTE_STATUS_AVAILABLE",
        original.tweet_id,
    )
    listed = http_call(mesh.ports.envoy, "GET", f"/v1/tweets/{original.tweet_id}/quotes").json()
    assert [t["tweet_id"] for t in listed["tweets"]] == [posted.tweet_id]
    # Its event names the quoted tweet and counts its author as mentioned, for whoever listens.
    entries: list[tuple[bytes, dict[bytes, bytes]]] = redis_client(mesh.redis_url).xrevrange(  # type: ignore[assignment]
        "events:tweets", count=200
    )
    (event,) = [e for e in map(decoded, entries) if e is not None and e.tweet_id == posted.tweet_id]
    assert event.quote_tweet_id == original.tweet_id and author.user_id in event.mentioned_user_ids


def test_quoting_what_does_not_exist_is_refused_and_stores_nothing(stubs: Stubs) -> None:
    quoter = stubs.sign_up("nothing")
    before = stubs.snapshot(quoter)
    for bad, code in (
        ("1999999999999999999", grpc.StatusCode.NOT_FOUND),
        ("x1", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        error = rpc_error(lambda bad=bad: quote(stubs, quoter, "quoting nothing", bad))  # type: ignore[misc]
        assert error.code() == code and "quote_tweet_id" in str(error.details())
    assert stubs.snapshot(quoter) == before
    missing = rpc_error(lambda: quotes(stubs, "1999999999999999999"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
