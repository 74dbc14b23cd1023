"""Sessions: tokens stored only as digests, expiring, revoked by logout and by a password change,
and an open home stream ends with UNAUTHENTICATED once its token is no longer good."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import time
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
import redis.asyncio as aioredis

from devstack.mesh import Mesh
from meshkit.auth import REVOKED, Session, new_token
from tests.helpers import (
    PASSWORD,
    Account,
    LiveStream,
    Stubs,
    bearer,
    eventually,
    http_call,
    redis_client,
    rpc_error,
)
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from users_svc.storage import RedisSessionCache


def insert_session(mesh: Mesh, account: Account, lifetime: timedelta) -> str:
    """A session users_svc would have made, expiring `lifetime` from now (negative: already over)."""
    token = new_token()
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users.sessions (token_hash, user_id, expire_time) VALUES (%s, %s, now() + %s)",
            (hashlib.sha256(token.encode()).digest(), int(account.user_id), lifetime),
        )
    return token


def can_post(stubs: Stubs, token: str) -> bool:
    try:
        stubs.tweets.CreateTweet(tweets_pb.CreateTweetRequest(text="still me"), metadata=bearer(token))
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
        return False
    return True


def stream_ended_unauthenticated(stream: LiveStream) -> bool:
    """Drains the stream's events; True once it ended with UNAUTHENTICATED."""
    while not stream.events.empty():
        item = stream.events.get_nowait()
        if isinstance(item, grpc.RpcError):
            assert item.code() == grpc.StatusCode.UNAUTHENTICATED, item.details()
            return True
    return False


def test_tokens_are_stored_only_as_digests(stubs: Stubs, mesh: Mesh) -> None:
    account = stubs.sign_up("digest")
    assert can_post(stubs, account.token)  # the session is in the cache now (it lives 5 s there)
    digest = hashlib.sha256(account.token.encode()).digest()
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'users' AND table_name = 'sessions'"
            )
        ]
        rows = conn.execute(
            "SELECT token_hash FROM users.sessions WHERE user_id = %s", (int(account.user_id),)
        ).fetchall()
    assert sorted(columns) == ["create_time", "expire_time", "token_hash", "user_id"]
    assert [bytes(r[0]) for r in rows] == [digest]
    r = redis_client(mesh.redis_url)
    cached = r.get(f"session:{digest.hex()}")
    assert cached is not None and account.token.encode() not in cached
    assert not list(r.scan_iter(f"*{account.token}*"))


def test_an_expired_token_is_refused(stubs: Stubs, mesh: Mesh) -> None:
    account = stubs.sign_up("expired")
    token = insert_session(mesh, account, timedelta(seconds=-1))
    assert not can_post(stubs, token)
    response = http_call(mesh.ports.envoy, "POST", "/v1/tweets", {"text": "late"}, token=token)
    assert response.status == 401
    assert stubs.snapshot(account)[1] == [[]]


def test_a_token_stops_working_when_it_expires_and_its_stream_ends(stubs: Stubs, mesh: Mesh) -> None:
    account = stubs.sign_up("expiring")
    token = insert_session(mesh, account, timedelta(seconds=3))
    assert can_post(stubs, token)
    stream = LiveStream(stubs.timeline, Account(account.user, token))
    try:
        eventually(lambda: not can_post(stubs, token), timeout=10)
        eventually(lambda: stream_ended_unauthenticated(stream), timeout=10)
    finally:
        stream.close()


def test_logout_revokes_the_token_and_ends_its_stream(stubs: Stubs) -> None:
    account = stubs.sign_up("logout")
    stream = LiveStream(stubs.timeline, account)
    try:
        stream.next_event(timeout=10)  # open: a heartbeat arrived
        stubs.users.Logout(users_pb.LogoutRequest(), metadata=account.auth)
        assert not can_post(stubs, account.token)
        eventually(lambda: stream_ended_unauthenticated(stream), timeout=10)
    finally:
        stream.close()


def change_password(stubs: Stubs, account: Account, old: str, new: str) -> users_pb.ChangePasswordResponse:
    return stubs.users.ChangePassword(
        users_pb.ChangePasswordRequest(user_id=account.user_id, old_password=old, new_password=new),
        metadata=account.auth,
    )


def test_a_password_change_revokes_every_session_and_ends_their_streams(stubs: Stubs) -> None:
    account = stubs.sign_up("passwd")
    elsewhere = stubs.users.Login(users_pb.LoginRequest(handle=account.user.handle, password=PASSWORD))
    other_device = Account(elsewhere.user, elsewhere.token)
    stream = LiveStream(stubs.timeline, other_device)
    try:
        stream.next_event(timeout=10)
        changed = change_password(stubs, account, PASSWORD, "a brand new passphrase")
        assert changed.token not in {account.token, other_device.token}
        assert not can_post(stubs, account.token)
        assert not can_post(stubs, other_device.token)
        assert can_post(stubs, changed.token)
        eventually(lambda: stream_ended_unauthenticated(stream), timeout=10)
    finally:
        stream.close()
    old = rpc_error(
        lambda: stubs.users.Login(users_pb.LoginRequest(handle=account.user.handle, password=PASSWORD))
    )
    assert old.code() == grpc.StatusCode.UNAUTHENTICATED
    login = stubs.users.Login(
        users_pb.LoginRequest(handle=account.user.handle, password="a brand new passphrase")
    )
    assert login.user.user_id == account.user_id


def test_a_revocation_holds_when_redis_refuses_its_tombstone_and_no_refill_brings_it_back(
    stubs: Stubs, mesh: Mesh
) -> None:
    """A password change whose tombstones are lost (here Redis refuses SETEX, the command that
    writes them, for the length of the call; a users_svc dying after the commit, a paused Redis or
    a failover lose them the same way): the old token may be accepted from the cache for a moment,
    until the outbox's
    sweeper writes the revocation's tombstone (OUTBOX_SWEEP_SECONDS, doubled after each failed
    sweep); and a refill of the cache afterwards (a lookup that read PostgreSQL before the change)
    leaves the tombstone where it is."""
    account = stubs.sign_up("lostrevoke")
    r = redis_client(mesh.redis_url)
    cached = f"session:{hashlib.sha256(account.token.encode()).hexdigest()}"
    assert can_post(stubs, account.token)  # cached afresh
    r.execute_command("ACL", "SETUSER", "default", "-setex")  # type: ignore[no-untyped-call]
    try:
        change_password(stubs, account, PASSWORD, "changed while redis refused")
    finally:
        r.execute_command("ACL", "SETUSER", "default", "+setex")  # type: ignore[no-untyped-call]
    changed_at = time.monotonic()
    assert r.get(cached) not in (None, REVOKED), "the entry is gone already: this test would prove nothing"
    eventually(lambda: not can_post(stubs, account.token), timeout=30, interval=0.1)
    took = time.monotonic() - changed_at
    print(f"old token refused {took:.2f} s after Redis took writes again")
    assert r.get(cached) == REVOKED
    # A lookup that found the session in PostgreSQL before the change refills the cache late.
    session = Session(int(account.user_id), datetime.now(UTC) + timedelta(hours=1))
    asyncio.run(refill_late(mesh.redis_url, account.token, session))
    assert r.get(cached) == REVOKED
    assert not can_post(stubs, account.token)


async def refill_late(redis_url: str, token: str, session: Session) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await RedisSessionCache(client, 300).refill({token: session})
    finally:
        await client.aclose()


def test_change_password_over_http(stubs: Stubs, mesh: Mesh) -> None:
    account = stubs.sign_up("httppw")
    path = f"/v1/users/{account.user_id}:changePassword"
    body = {"old_password": PASSWORD, "new_password": "another passphrase"}
    response = http_call(mesh.ports.envoy, "POST", path, body, token=account.token)
    assert response.status == 200, response.body
    fresh = response.json()["token"]
    assert can_post(stubs, fresh) and not can_post(stubs, account.token)
    again = http_call(mesh.ports.envoy, "POST", path, body, token=account.token)
    assert again.status == 401


def test_an_open_stream_keeps_going_while_its_token_is_good(stubs: Stubs) -> None:
    account = stubs.sign_up("steady")
    stream = LiveStream(stubs.timeline, account)
    try:
        for _ in range(3):  # each heartbeat re-checks the token and passes
            assert stream.next_event(timeout=10).WhichOneof("event") == "heartbeat"
    finally:
        stream.close()


def test_logout_ends_an_ndjson_stream_through_envoy(stubs: Stubs, mesh: Mesh) -> None:
    account = stubs.sign_up("ndjsonout")
    conn = http.client.HTTPConnection("127.0.0.1", mesh.ports.envoy, timeout=10)
    conn.request("GET", "/v1/timelines/home:stream", headers={"authorization": f"Bearer {account.token}"})
    response = conn.getresponse()
    try:
        assert response.status == 200
        assert "heartbeat" in json.loads(response.readline())
        stubs.users.Logout(users_pb.LogoutRequest(), metadata=account.auth)
        for _ in range(100):  # heartbeats until the re-check refuses the token, then the end
            line = response.readline()
            if not line:
                break
            assert "tweet" not in json.loads(line)
        else:
            pytest.fail("the stream went on after logout")
    finally:
        conn.close()
    # Envoy ends the chunked response without the status (HTTP/1.1 has no place for it); the
    # client's reconnect is what hears 401.
    again = http_call(mesh.ports.envoy, "GET", "/v1/timelines/home:stream", token=account.token)
    assert again.status == 401
