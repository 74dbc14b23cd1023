"""The transactional outbox: a tweet committed while its event cannot reach Redis, by a process
that then dies, is still fanned out (by the outbox sweeper of the process that comes back); the
rows of relayed events are deleted in the background, and nothing is relayed twice meanwhile."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import psycopg

from social import TWEETS_STREAM
from social.timelines import home_key, unpack
from tests.helpers import Account, Stubs, eventually, redis_client
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb


def test_a_tweet_committed_by_a_process_that_died_before_relaying_it_is_delivered(
    mesh: Any, stubs: Stubs
) -> None:
    reader, author = stubs.sign_up("outbox"), stubs.sign_up("author")
    stubs.follow(reader, author)
    stubs.home(reader)  # the home timeline exists in Redis: fan-out writes into it
    redis = redis_client(mesh.redis_url)

    def home_ids(account: Account) -> list[int]:
        """What fan-out wrote into the account's home timeline in Redis (no rebuild involved)."""
        stored: bytes | None = redis.get(home_key(int(account.user_id)))  # type: ignore[assignment]
        return unpack(stored) if stored else []

    # A Redis user that may do everything but XADD: the relay right after the commit fails.
    redis.acl_setuser(
        "no_xadd", enabled=True, nopass=True, keys=["*"], channels=["*"], commands=["+@all", "-xadd"]
    )
    try:
        # A tweets_svc relaying as that user, whose own sweeper never runs.
        no_xadd_url = mesh.redis_url.replace("redis://", "redis://no_xadd@")
        mesh.start_service("tweets", {"REDIS_URL": no_xadd_url, "OUTBOX_SWEEP_SECONDS": "3600"})
        tweet_id = stubs.post(author, "committed, never relayed").tweet_id  # acknowledged all the same
        mesh.kill_service("tweets")  # the event is only in the outbox table now
        assert int(tweet_id) not in home_ids(reader)
    finally:
        mesh.start_service("tweets")
        redis.acl_deluser("no_xadd")

    eventually(lambda: int(tweet_id) in home_ids(reader), timeout=20)
    assert stubs.home_ids(reader)[0] == tweet_id


def test_relayed_events_leave_the_outbox_in_the_background_and_are_relayed_once(
    mesh: Any, stubs: Stubs
) -> None:
    author = stubs.sign_up("relayed")
    posted = {stubs.post(author, f"relayed {n}").tweet_id for n in range(5)}
    with psycopg.connect(mesh.database_url) as conn:

        def outbox_rows() -> int:
            row = conn.execute("SELECT count(*) FROM tweets.outbox").fetchone()
            return int(row[0]) if row else -1

        eventually(lambda: outbox_rows() == 0)
    # Long enough for the sweeper (every OUTBOX_SWEEP_SECONDS: 0.5 s here) to have relayed again
    # anything whose row had stayed behind.
    time.sleep(2)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = redis_client(mesh.redis_url).xrange(TWEETS_STREAM)  # type: ignore[assignment]
    relayed = Counter(
        event.tweet_id
        for _, fields in entries
        if (event := tweets_pb.TweetEvent.FromString(fields[b"data"])).tweet_id in posted
    )
    assert relayed == dict.fromkeys(posted, 1)
