"""The owners' caches of tweets and users (social.caches) on a mesh of their own: a home page
served from them equals, field for field, the page rebuilt through the owners after a wipe (counts,
deletions, replies to deleted tweets, retweets, celebrity merges and profiles included), and a
change whose invalidation was lost shows no longer than the caches' lifetime."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from devstack.mesh import Mesh
from social.caches import tweet_key, user_key
from tests.conftest import TEST_ENV, mesh_stubs
from tests.conftest import test_mesh as private_mesh  # (its own name would be collected as a test)
from tests.helpers import Account, Stubs, eventually, held_in_redis, redis_client
from tests.integration.test_hybrid import THRESHOLD, make_celebrity
from tests.integration.test_observability import scrape, value
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

CACHE_TTL_SECONDS = 6


@pytest.fixture(scope="module")
def cached_mesh() -> Iterator[Mesh]:
    with private_mesh(TEST_ENV | {"CACHE_TTL_SECONDS": str(CACHE_TTL_SECONDS)}, "tweetmesh-caches-") as mesh:
        yield mesh


@pytest.fixture(scope="module")
def cached_stubs(cached_mesh: Mesh) -> Iterator[Stubs]:
    with mesh_stubs(cached_mesh) as stubs:
        yield stubs


def owner_reads(mesh: Mesh) -> float:
    """How many times timeline_svc has asked tweets_svc for tweets (its misses)."""
    return value(scrape(mesh, "tweets"), "grpc_server_handled_total", grpc_method="BatchGetTweets")


def like(stubs: Stubs, account: Account, tweet_id: str) -> None:
    stubs.tweets.LikeTweet(tweets_pb.LikeTweetRequest(tweet_id=tweet_id), metadata=account.auth, timeout=10)


def pages(stubs: Stubs, viewer: Account, size: int) -> list[timeline_pb.GetHomeTimelineResponse]:
    found = [stubs.home(viewer, size)]
    while found[-1].next_page_token:
        found.append(stubs.home(viewer, size, found[-1].next_page_token))
    return found


def test_a_page_from_the_caches_equals_the_page_rebuilt_through_the_owners(
    cached_mesh: Mesh, cached_stubs: Stubs
) -> None:
    stubs = cached_stubs
    viewer, friend, other = stubs.sign_up("viewer"), stubs.sign_up("friend"), stubs.sign_up("other")
    stranger = stubs.sign_up("stranger")
    stubs.home(viewer)  # the viewer's timeline exists: fan-out writes into it
    fans = [viewer, *(stubs.sign_up("fan") for _ in range(THRESHOLD))]
    celebrity = make_celebrity(stubs, cached_mesh, fans)
    stubs.follow(viewer, friend)
    stubs.follow(viewer, other)
    stubs.follow(friend, other)
    first = stubs.post(friend, "first, soon with replies and likes")
    gone = stubs.post(other, "to be deleted, with a reply")
    reply = stubs.post(friend, "a reply to a tweet that goes", reply_to_tweet_id=gone.tweet_id)
    answer = stubs.post(other, f"hello @{friend.user.handle} #cached", reply_to_tweet_id=first.tweet_id)
    loud = stubs.post(celebrity, "from the celebrity, merged at read time")
    far = stubs.post(stranger, "from someone the viewer does not follow")
    retweet = stubs.tweets.Retweet(
        tweets_pb.RetweetRequest(tweet_id=far.tweet_id), metadata=friend.auth, timeout=10
    ).tweet
    for account in (viewer, other):
        like(stubs, account, first.tweet_id)
    stubs.tweets.DeleteTweet(
        tweets_pb.DeleteTweetRequest(tweet_id=gone.tweet_id), metadata=other.auth, timeout=10
    )
    stubs.users.UpdateUser(
        users_pb.UpdateUserRequest(user_id=friend.user_id, bio="edited after posting"),
        metadata=friend.auth,
        timeout=10,
    )
    expected = {first.tweet_id, reply.tweet_id, answer.tweet_id, loud.tweet_id, retweet.tweet_id}
    eventually(
        lambda: expected <= set(stubs.home_ids(viewer)) and gone.tweet_id not in stubs.home_ids(viewer)
    )

    warm = pages(stubs, viewer, 3)
    misses = owner_reads(cached_mesh)
    cached = pages(stubs, viewer, 3)
    assert owner_reads(cached_mesh) == misses, (
        "a warm page asked tweets_svc: it was not served from the caches"
    )
    assert cached == warm
    shown = {t.tweet_id: t for page in cached for t in page.tweets}
    assert gone.tweet_id not in shown
    assert shown[reply.tweet_id].reply_to_deleted
    assert shown[first.tweet_id].like_count == 2
    assert shown[first.tweet_id].reply_count == 1
    assert shown[first.tweet_id].author.bio == "edited after posting"
    assert shown[first.tweet_id].author.tweets_count == 3
    assert shown[retweet.tweet_id].retweeted_tweet.retweet_count == 1
    assert shown[retweet.tweet_id].retweeted_tweet.author.user_id == stranger.user_id
    assert shown[loud.tweet_id].author.followers_count == len(fans)

    redis_client(cached_mesh.redis_url).flushall()
    rebuilt = pages(stubs, viewer, 3)  # read from the owners while the timeline is rebuilt
    assert [t for page in rebuilt for t in page.tweets] == [t for page in cached for t in page.tweets]
    eventually(lambda: not stubs.home(viewer, 3).rebuilding)
    assert owner_reads(cached_mesh) > misses
    assert pages(stubs, viewer, 3) == cached


def test_a_quote_shows_what_it_quotes_and_the_quoted_tweet_its_fresh_quote_count(
    cached_mesh: Mesh, cached_stubs: Stubs
) -> None:
    # A quote tweet is never cached (tweets_svc assembles the tweet it quotes); the quoted tweet is,
    # and a quote makes its entry stale (quote_count), as a deleted quote does again.
    stubs = cached_stubs
    viewer, friend = stubs.sign_up("qviewer"), stubs.sign_up("qfriend")
    stubs.home(viewer)
    stubs.follow(viewer, friend)
    quoted = stubs.post(friend, "worth quoting")
    eventually(lambda: quoted.tweet_id in stubs.home_ids(viewer))
    assert {t.tweet_id: t for p in pages(stubs, viewer, 5) for t in p.tweets}[
        quoted.tweet_id
    ].quote_count == 0
    quote = stubs.post(friend, "quoting it", quote_tweet_id=quoted.tweet_id)
    eventually(lambda: quote.tweet_id in stubs.home_ids(viewer))
    warm = pages(stubs, viewer, 5)
    shown = {t.tweet_id: t for page in warm for t in page.tweets}
    assert shown[quoted.tweet_id].quote_count == 1
    assert shown[quote.tweet_id].quoted_tweet.tweet_id == quoted.tweet_id
    assert shown[quote.tweet_id].quoted_tweet.author.user_id == friend.user_id
    assert shown[quote.tweet_id].quote_status == tweets_pb.QUOTE_STATUS_AVAILABLE
    redis_client(cached_mesh.redis_url).flushall()
    assert [t for page in pages(stubs, viewer, 5) for t in page.tweets] == [
        t for page in warm for t in page.tweets
    ]
    stubs.tweets.DeleteTweet(
        tweets_pb.DeleteTweetRequest(tweet_id=quote.tweet_id), metadata=friend.auth, timeout=10
    )
    eventually(lambda: quote.tweet_id not in stubs.home_ids(viewer))
    after = {t.tweet_id: t for page in pages(stubs, viewer, 5) for t in page.tweets}
    assert after[quoted.tweet_id].quote_count == 0


def test_a_lost_invalidation_shows_no_longer_than_the_caches_lifetime(
    cached_mesh: Mesh, cached_stubs: Stubs
) -> None:
    stubs = cached_stubs
    viewer, author = stubs.sign_up("viewer"), stubs.sign_up("author")
    stubs.home(viewer)
    stubs.follow(viewer, author)
    kept, dropped = stubs.post(author, "kept"), stubs.post(author, "deleted behind the caches' back")
    # Both fanned out into the stored timeline: a page shows them before that too, read from the
    # owners (the timeline being rebuilt after the follow, or empty while fan-out builds the
    # author's follower list after the last test's FLUSHALL), and only a page whose ids come from
    # Redis shows what the caches hold.
    r = redis_client(cached_mesh.redis_url)
    eventually(lambda: {kept.tweet_id, dropped.tweet_id} <= set(held_in_redis(r, viewer.user_id) or ()))
    eventually(lambda: len((page := stubs.home(viewer)).tweets) == 2 and not page.rebuilding)
    # The entries written now (a miss, filled through the owners) live CACHE_TTL_SECONDS from here.
    ids = (int(kept.tweet_id), int(dropped.tweet_id))
    r.delete(*map(tweet_key, ids), user_key(int(author.user_id)))
    before = stubs.home(viewer)
    filled_at = time.monotonic()
    # Changes that never told the caches (as if Redis had been unreachable at their commit).
    with psycopg.connect(cached_mesh.database_url, autocommit=True) as conn:
        conn.execute("UPDATE tweets.tweets SET like_count = 7 WHERE id = %s", (int(kept.tweet_id),))
        conn.execute("UPDATE tweets.tweets SET delete_time = now() WHERE id = %s", (int(dropped.tweet_id),))
        conn.execute("UPDATE users.users SET bio = 'changed quietly' WHERE id = %s", (int(author.user_id),))
    assert stubs.home(viewer) == before  # stale, within the bound
    eventually(lambda: [t.tweet_id for t in stubs.home(viewer).tweets] == [kept.tweet_id], timeout=20)
    assert time.monotonic() - filled_at <= CACHE_TTL_SECONDS + 2
    (fresh,) = stubs.home(viewer).tweets
    assert fresh.like_count == 7
    assert fresh.author.bio == "changed quietly"
