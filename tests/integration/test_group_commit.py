"""Posts in group commits: concurrent CreateTweet calls are written together, and each still gets
its own answer, its own idempotency and its own error."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
from collections import Counter
from typing import Any

import grpc
import psycopg
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool

from devstack.mesh import Mesh
from meshkit.outbox import Outbox
from social.caches import LIVE, STALE, tweet_key, tweets_count_key
from social.timelines import home_key, pack
from tests.helpers import Account, Stubs, eventually, redis_client
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc
from tweets_svc.server import deletion_entries, like_event, tweet_cache, tweet_event
from tweets_svc.service import NewTweet, ReplyTargetMissing, Tweet
from tweets_svc.storage import PostgresTweetStore

AUTHORS = 50


def batches_of_posts(mesh: Mesh) -> tuple[float, float]:
    """(batches, posts) tweets_svc's group commit has run so far."""
    url = f"http://127.0.0.1:{mesh.ports.tweets_metrics}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        families = text_string_to_metric_families(response.read().decode())
    samples = {
        s.name: s.value
        for family in families
        if family.name == "tweetmesh_group_commit_size"
        for s in family.samples
        if s.labels.get("batch") == "posts" and s.name.endswith(("_count", "_sum"))
    }
    return samples.get("tweetmesh_group_commit_size_count", 0.0), samples.get(
        "tweetmesh_group_commit_size_sum", 0.0
    )


def held_raw(mesh: Mesh, account: Account) -> Counter[bytes]:
    """How many times each packed tweet id is stored in the account's Redis home timeline (no
    dedupe: a tweet delivered twice counts twice)."""
    data: bytes = redis_client(mesh.redis_url).get(home_key(int(account.user_id))) or b""  # type: ignore[assignment]
    return Counter(data[i : i + 8] for i in range(8, len(data), 8))


async def post_all(address: str, calls: list[tuple[Account, tweets_pb.CreateTweetRequest]]) -> list[Any]:
    """Sends every call at once; each outcome is the tweet or the grpc.aio.AioRpcError."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tweets_grpc.TweetServiceStub(channel)

        async def one(author: Account, request: tweets_pb.CreateTweetRequest) -> Any:
            try:
                return (await stub.CreateTweet(request, metadata=author.auth, timeout=30)).tweet
            except grpc.aio.AioRpcError as error:
                return error

        return await asyncio.gather(*(one(a, r) for a, r in calls))


def test_two_hundred_concurrent_posts_each_keep_their_own_outcome(mesh: Mesh, stubs: Stubs) -> None:
    authors = [stubs.sign_up(f"gc{i}") for i in range(AUTHORS)]
    readers = [stubs.sign_up(f"gcr{j}") for j in range(AUTHORS // 2)]
    for j, reader in enumerate(readers):  # reader j follows authors 2j and 2j + 1 (no celebrity)
        stubs.follow(reader, authors[2 * j])
        stubs.follow(reader, authors[2 * j + 1])
    parents = [stubs.post(a, "a thread starts").tweet_id for a in authors]
    doomed = [stubs.post(a, "deleted before the replies").tweet_id for a in authors]
    for author, tweet_id in zip(authors, doomed, strict=True):
        stubs.tweets.DeleteTweet(
            tweets_pb.DeleteTweetRequest(tweet_id=tweet_id), metadata=author.auth, timeout=10
        )
    for account in [*authors, *readers]:
        stubs.home(account)  # the home timelines exist: fan-out writes into them

    # Four calls per author, all sent at once: one post sent twice with the same request_id, a
    # valid post (a plain one or a reply to their thread), and an invalid one.
    calls: list[tuple[Account, tweets_pb.CreateTweetRequest]] = []
    for i, author in enumerate(authors):
        retried = tweets_pb.CreateTweetRequest(text=f"sent twice #t{i}", request_id=f"gc-{i}")
        valid = (
            tweets_pb.CreateTweetRequest(text=f"plain @{authors[(i + 1) % AUTHORS].user.handle}")
            if i % 2 == 0
            else tweets_pb.CreateTweetRequest(text="and a reply", reply_to_tweet_id=parents[i])
        )
        invalid = [
            tweets_pb.CreateTweetRequest(text="x" * 281),
            tweets_pb.CreateTweetRequest(text="to a deleted tweet", reply_to_tweet_id=doomed[i]),
            tweets_pb.CreateTweetRequest(text="   "),
        ][i % 3]
        calls += [(author, retried), (author, valid), (author, retried), (author, invalid)]
    batches_before, posts_before = batches_of_posts(mesh)
    outcomes = asyncio.run(post_all(f"127.0.0.1:{mesh.ports.tweets}", calls))
    batches, posts = (
        b - a for a, b in zip((batches_before, posts_before), batches_of_posts(mesh), strict=True)
    )

    expected: dict[str, set[str]] = {}
    for i, author in enumerate(authors):
        first, valid, again, invalid = outcomes[4 * i : 4 * i + 4]
        assert isinstance(first, tweets_pb.Tweet) and isinstance(valid, tweets_pb.Tweet), (first, valid)
        assert isinstance(again, tweets_pb.Tweet) and again.tweet_id == first.tweet_id
        assert first.text == f"sent twice #t{i}" and first.hashtags == [f"t{i}"]
        assert isinstance(invalid, grpc.aio.AioRpcError)
        wanted = [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND][i % 3 == 1]
        assert invalid.code() == wanted, (i, invalid)
        if i % 2 == 0:
            assert [m.user_id for m in valid.mentions] == [authors[(i + 1) % AUTHORS].user_id]
        else:
            assert valid.reply_to_tweet_id == parents[i] and valid.reply_to_author_id == author.user_id
        expected[author.user_id] = {parents[i], first.tweet_id, valid.tweet_id}
    # The calls were gathered: fewer batches than posts reached them.
    assert posts >= 2 * AUTHORS and batches < posts, (batches, posts)

    for i, author in enumerate(authors):  # every valid post stored once, with exact counts
        listed = stubs.tweets.ListUserTweets(
            tweets_pb.ListUserTweetsRequest(user_id=author.user_id, page_size=100), timeout=10
        ).tweets
        assert sorted(t.tweet_id for t in listed) == sorted(expected[author.user_id])
        assert stubs.user(author).tweets_count == 3
        thread = stubs.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id=parents[i]), timeout=10).tweet
        assert thread.reply_count == i % 2

    def delivered_once() -> bool:  # each post in each follower's (and its author's) timeline, once
        for j, reader in enumerate(readers):
            wanted = expected[authors[2 * j].user_id] | expected[authors[2 * j + 1].user_id]
            held = held_raw(mesh, reader)
            assert {k: n for k, n in held.items() if n > 1} == {}
            if not {pack([int(t)]) for t in wanted} <= set(held):
                return False
        return all({pack([int(t)]) for t in expected[a.user_id]} <= set(held_raw(mesh, a)) for a in authors)

    eventually(delivered_once, timeout=30)
    assert all(max(held_raw(mesh, a).values()) == 1 for a in [*authors, *readers])


@pytest.fixture
async def store(mesh: Mesh) -> Any:
    """tweets_svc's store on the mesh's PostgreSQL, its batches run one at a time."""
    pool = AsyncConnectionPool(
        mesh.database_url,
        open=False,
        kwargs={"options": "-c search_path=tweets,public", "autocommit": True},
    )
    await pool.open(wait=True)
    redis = aioredis.Redis.from_url(mesh.redis_url)
    try:
        cache = tweet_cache(redis, 600)
        outbox = Outbox(pool, redis, on_relay=deletion_entries(cache))
        yield PostgresTweetStore(pool, outbox, tweet_event, like_event, cache, batches_in_flight=1)
    finally:
        await redis.aclose()
        await pool.close()


async def test_a_post_the_database_refuses_fails_alone_and_its_batch_is_retried(
    store: Any, mesh: Mesh
) -> None:
    author = 7_000_000_000_000_000_001  # no such user: the store does not ask
    gone = await store.create(NewTweet(author, "soon deleted", None, None))
    await store.delete(gone.tweet_id, author)
    posts = [
        NewTweet(author, "first, alone in its batch", None, None),
        NewTweet(author, "kept", None, "same-id"),
        NewTweet(author, "too long for the CHECK constraint " + "x" * 280, None, None),
        NewTweet(author, "a reply to a deleted tweet", gone.tweet_id, None),
        NewTweet(author, "kept", None, "same-id"),
    ]
    outcomes = await asyncio.gather(*(store.create(p) for p in posts), return_exceptions=True)
    first, kept, too_long, orphan, again = outcomes
    assert isinstance(first, Tweet) and isinstance(kept, Tweet)
    assert isinstance(too_long, psycopg.errors.CheckViolation)
    assert isinstance(orphan, ReplyTargetMissing)
    assert isinstance(again, Tweet) and again.tweet_id == kept.tweet_id
    async with await psycopg.AsyncConnection.connect(mesh.database_url) as conn:
        cur = await conn.execute(
            "SELECT text FROM tweets.tweets WHERE author_id = %s AND delete_time IS NULL ORDER BY id",
            (author,),
        )
        assert [r[0] for r in await cur.fetchall()] == ["first, alone in its batch", "kept"]
        cur = await conn.execute(
            "SELECT tweets_count FROM tweets.author_stats WHERE author_id = %s", (author,)
        )
        assert (await cur.fetchone() or [None])[0] == 2
    assert kept.author_tweets_count == 2


async def test_a_batch_answers_and_caches_what_a_read_of_the_stored_tweets_gives(
    store: Any, mesh: Mesh
) -> None:
    author, friend = 7_000_000_000_000_000_002, 7_000_000_000_000_000_003
    parent = await store.create(NewTweet(friend, "a parent", None, None))
    news = [
        NewTweet(author, "first", None, None),
        NewTweet(author, "a reply #tagged", parent.tweet_id, "r-1", hashtags=("tagged",)),
        NewTweet(author, "plain", None, None),
    ]
    answers = await asyncio.gather(*(store.create(n) for n in news))
    cache = redis_client(mesh.redis_url)
    keys = [*(tweet_key(a.tweet_id) for a in answers), tweets_count_key(author), tweet_key(parent.tweet_id)]
    # The batch's relay wrote the new tweets and their author's count as a read would (a read
    # rewrites them, at the same versions), and marked the replied-to tweet stale.
    batched = cache.mget(keys)
    assert batched[-1] is not None and batched[-1][8:9] == STALE
    stored = await store.by_ids([a.tweet_id for a in answers])
    assert cache.mget(keys[:-1]) == batched[:-1]
    assert all(entry is not None and entry[8:9] == LIVE for entry in batched[:-1])

    def apart_from_count(tweet: Tweet) -> Tweet:
        return dataclasses.replace(tweet, author_tweets_count=None, author_tweets_count_version=0)

    assert [apart_from_count(stored[a.tweet_id]) for a in answers] == [apart_from_count(a) for a in answers]
    reply = answers[1]
    assert (reply.reply_to_author_id, reply.reply_to_deleted, reply.mentions) == (friend, False, ())
    assert (await store.by_ids([parent.tweet_id]))[parent.tweet_id].reply_count == 1
    # The first went alone, the other two together: each saw the count its commit left.
    assert [a.author_tweets_count for a in answers] == [1, 3, 3]
