"""The PostgreSQL read replica (DATABASE_READ_URL): a real streaming replica of the test mesh's
PostgreSQL (pg_basebackup -R), with tweets_svc and users_svc restarted to read it.

With the replica's replay paused, what it serves is the state before the pause: the reads that
tolerate lag (others' view of an author's tweets, hashtag pages, search, user search) miss what was
written since, which shows they are served there; the reads of one's own writes show them at once
(the primary). Paused longer than DATABASE_READ_MAX_LAG_SECONDS, it is set aside until it has
caught up. Stopped, its reads fall back to the primary without an error; started again, they go
back to it."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from devstack.mesh import Mesh
from tests.helpers import Account, Stubs, eventually
from tests.integration.test_observability import scrape, value
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

READERS = ("users", "tweets")
# Long enough that the paused replica keeps serving while the first test looks at it.
PATIENT = {"DATABASE_READ_MAX_LAG_SECONDS": "600"}


@pytest.fixture(scope="module")
def replica(mesh: Mesh) -> Iterator[str]:
    """The replica's URL; users_svc and tweets_svc read it until the module ends."""
    url = mesh.start_read_replica()
    try:
        for name in READERS:
            mesh.start_service(name, extra_env=PATIENT)
        yield url
    finally:
        mesh.stop_read_replica()
        for name in READERS:
            mesh.start_service(name)


def served(mesh: Mesh, service: str, by: str) -> float:
    return value(scrape(mesh, service), "tweetmesh_db_reads_total", schema=service, served_by=by)


def user_tweets(stubs: Stubs, author: Account, viewer: Account) -> list[str]:
    request = tweets_pb.ListUserTweetsRequest(user_id=author.user_id, page_size=100)
    return [t.tweet_id for t in stubs.tweets.ListUserTweets(request, metadata=viewer.auth, timeout=10).tweets]


def tagged(stubs: Stubs, tag: str, viewer: Account) -> list[str]:
    request = tweets_pb.ListHashtagTweetsRequest(tag=tag, page_size=100)
    page = stubs.tweets.ListHashtagTweets(request, metadata=viewer.auth, timeout=10)
    return [t.tweet_id for t in page.tweets]


def found(stubs: Stubs, word: str, viewer: Account) -> list[str]:
    request = tweets_pb.SearchTweetsRequest(query=word, page_size=100)
    return [t.tweet_id for t in stubs.tweets.SearchTweets(request, metadata=viewer.auth, timeout=10).tweets]


def replayed_to(replica: str, primary: str) -> None:
    """Waits until the replica has replayed everything the primary has written so far."""
    with psycopg.connect(primary, autocommit=True) as conn:
        (written,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone() or (None,)
    with psycopg.connect(replica, autocommit=True) as conn:
        replay = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
        eventually(lambda: (conn.execute(replay, (written,)).fetchone() or (False,))[0])


def users_found(stubs: Stubs, prefix: str, viewer: Account) -> list[str]:
    request = users_pb.SearchUsersRequest(query=prefix, page_size=100)
    return [u.user_id for u in stubs.users.SearchUsers(request, metadata=viewer.auth, timeout=10).users]


def test_lag_tolerant_reads_come_from_the_replica_and_own_writes_from_the_primary(
    mesh: Mesh, stubs: Stubs, replica: str
) -> None:
    author, reader = stubs.sign_up("rauthor"), stubs.sign_up("rreader")
    earlier = stubs.post(author, "before the pause #replicated")
    with psycopg.connect(replica, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        # Everything written so far has reached the replica (the earlier tweet is on it).
        eventually(lambda: earlier.tweet_id in user_tweets(stubs, author, reader))
        replica_reads = served(mesh, "tweets", "replica")
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            state = "SELECT pg_get_wal_replay_pause_state()"
            eventually(lambda: conn.execute(state).fetchone() == ("paused",))
            word = f"paused{author.user_id}"
            posted = stubs.post(author, f"written while the replica waits {word} #{word}")
            newcomer = stubs.sign_up("rnew")

            # Reading one's own writes: the primary, at once.
            assert posted.tweet_id in user_tweets(stubs, author, author)
            got = stubs.tweets.GetTweet(tweets_pb.GetTweetRequest(tweet_id=posted.tweet_id), timeout=10)
            assert got.tweet.text == posted.text
            profile = stubs.users.GetUser(users_pb.GetUserRequest(user_id=newcomer.user_id), timeout=10)
            assert profile.user.handle == newcomer.user.handle

            # What tolerates lag: the replica, which has not replayed any of it.
            assert user_tweets(stubs, author, reader) == [earlier.tweet_id]
            assert tagged(stubs, word, reader) == []
            assert found(stubs, word, reader) == []
            assert newcomer.user_id not in users_found(stubs, newcomer.user.handle, reader)
            assert served(mesh, "tweets", "replica") >= replica_reads + 3
            assert served(mesh, "users", "replica") >= 1
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")

    # Replayed (up to the primary's WAL position now, not just up to the tweet: the sign-up came
    # after it): the replica shows it all.
    replayed_to(replica, mesh.database_url)
    eventually(lambda: tagged(stubs, word, reader) == [posted.tweet_id])
    assert user_tweets(stubs, author, reader) == [posted.tweet_id, earlier.tweet_id]
    assert found(stubs, word, reader) == [posted.tweet_id]
    assert newcomer.user_id in users_found(stubs, newcomer.user.handle, reader)


def test_a_replica_lagging_past_the_bound_is_set_aside_until_it_has_caught_up(
    mesh: Mesh, stubs: Stubs, replica: str
) -> None:
    mesh.start_service("tweets", extra_env={"DATABASE_READ_MAX_LAG_SECONDS": "1"})
    author, reader = stubs.sign_up("rlag"), stubs.sign_up("rlagr")
    word = f"lagging{author.user_id}"
    try:
        with psycopg.connect(replica, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            try:
                posted = stubs.post(author, f"the replica stands still #{word}")
                primary_reads = served(mesh, "tweets", "primary")
                # Past the bound (and the probe's next look) the page comes from the primary.
                eventually(lambda: tagged(stubs, word, reader) == [posted.tweet_id], timeout=30)
                assert served(mesh, "tweets", "primary") > primary_reads
            finally:
                conn.execute("SELECT pg_wal_replay_resume()")
        replica_reads = served(mesh, "tweets", "replica")

        def back_on_the_replica() -> bool:
            assert tagged(stubs, word, reader) == [posted.tweet_id]
            return served(mesh, "tweets", "replica") > replica_reads

        eventually(back_on_the_replica, timeout=30)
    finally:
        mesh.start_service("tweets", extra_env=PATIENT)


def test_without_the_replica_its_reads_go_to_the_primary_until_it_is_back(
    mesh: Mesh, stubs: Stubs, replica: str
) -> None:
    author, reader = stubs.sign_up("rdown"), stubs.sign_up("rdownr")
    mesh.stop_read_replica()
    word = f"fallback{author.user_id}"
    posted = stubs.post(author, f"the replica is down #{word}")
    primary_reads = served(mesh, "tweets", "primary")
    # Answered (not UNAVAILABLE, never INTERNAL), from the primary, with what was just written.
    assert tagged(stubs, word, reader) == [posted.tweet_id]
    assert user_tweets(stubs, author, reader) == [posted.tweet_id]
    assert found(stubs, word, reader) == [posted.tweet_id]
    assert served(mesh, "tweets", "primary") >= primary_reads + 3

    # A new replica on the same address: the services' probe takes it back.
    mesh.start_read_replica()
    replica_reads = served(mesh, "tweets", "replica")

    def back_on_the_replica() -> bool:
        assert tagged(stubs, word, reader) == [posted.tweet_id]
        return served(mesh, "tweets", "replica") > replica_reads

    eventually(back_on_the_replica, timeout=30)
