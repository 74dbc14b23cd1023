"""The transactional outbox: a tweet committed while its event cannot reach Redis, by a process
that then dies, is still fanned out (by the outbox sweeper of the process that comes back)."""

from __future__ import annotations

from typing import Any

from tests.helpers import Gate, Stubs, eventually, redis_client


def test_a_tweet_committed_by_a_process_that_died_before_relaying_it_is_delivered(
    mesh: Any, stubs: Stubs
) -> None:
    reader, author = stubs.sign_up("outbox"), stubs.sign_up("author")
    stubs.follow(reader, author)
    stubs.home(reader)  # the home timeline exists in Redis: fan-out writes into it
    redis_host, _, redis_port = mesh.redis_url.removeprefix("redis://").partition("/")[0].partition(":")
    gate = Gate((redis_host, int(redis_port)))
    try:
        # A tweets_svc whose Redis goes away, and whose own sweeper never runs.
        mesh.start_service(
            "tweets", {"REDIS_URL": f"redis://{gate.address}/0", "OUTBOX_SWEEP_SECONDS": "3600"}
        )
        gate.sever()
        tweet_id = stubs.post(author, "committed, never relayed").tweet_id  # acknowledged all the same
        mesh.kill_service("tweets")  # the event is only in the outbox table now
    finally:
        gate.shut()
        mesh.start_service("tweets")

    home = redis_client(mesh.redis_url)
    eventually(lambda: home.zscore(f"home:{reader.user_id}", tweet_id) is not None, timeout=20)
    assert stubs.home_ids(reader)[0] == tweet_id
