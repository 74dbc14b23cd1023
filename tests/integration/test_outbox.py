"""The transactional outbox: a tweet committed while its event cannot reach Redis, by a process
that then dies, is still fanned out (by the outbox sweeper of the process that comes back)."""

from __future__ import annotations

from typing import Any

from social.timelines import home_key, unpack
from tests.helpers import Account, Stubs, eventually, redis_client


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
