"""What the cross-process tests share: stubs on a running mesh, sign-up, polling, HTTP calls, a TCP gate."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, cast

import grpc
import pytest
import redis
from google.api import annotations_pb2
from google.rpc import error_details_pb2

from meshkit.rpc_details import error_details
from social.timelines import home_key, sharded_channel, unpack
from tweetmesh.fanout.v1 import fanout_service_pb2 as fanout_pb
from tweetmesh.fanout.v1 import fanout_service_pb2_grpc as fanout_grpc
from tweetmesh.media.v1 import media_service_pb2 as media_pb
from tweetmesh.media.v1 import media_service_pb2_grpc as media_grpc
from tweetmesh.notifications.v1 import notifications_service_pb2 as notifications_pb
from tweetmesh.notifications.v1 import notifications_service_pb2_grpc as notifications_grpc
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweetmesh.users.v1 import users_service_pb2_grpc as users_grpc

T = TypeVar("T")
PASSWORD = "correct horse battery"
WRITE_VERBS = ("post", "put", "patch", "delete")
# What a call made with a generated stub takes as `metadata`.
Metadata = tuple[tuple[str, str | bytes], ...]


def bearer(token: str) -> Metadata:
    """The metadata that authenticates a call with `token`."""
    return (("authorization", f"Bearer {token}"),)


def rpc_routes() -> dict[str, str]:
    """Every RPC of the mesh by full path ("/pkg.Service/Method"), mapped to the HTTP verb of its
    Envoy route, or "" for the internal ones (no route)."""
    found = {}
    files = (users_pb, tweets_pb, timeline_pb, fanout_pb, media_pb, notifications_pb)
    for file in (module.DESCRIPTOR for module in files):
        for service in file.services_by_name.values():
            for method in service.methods:
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                found[f"/{service.full_name}/{method.name}"] = rule.WhichOneof("pattern") or ""
    return found


def eventually(
    check: Callable[[], T | Literal[False] | None], timeout: float = 10.0, interval: float = 0.05
) -> T:
    """Polls `check` until it returns a truthy value (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {result!r})")
        time.sleep(interval)


def debian_tool(name: str, package: str) -> str:
    """The path of a program from a Debian package that `make test` installs when it runs as root
    (see the Makefile's TEST_TOOLS); the calling test is skipped, saying why, when it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(
            f"{name} is not installed: `make test` installs Debian's {package} when run as root; "
            f"otherwise apt-get install {package}"
        )
    return found


def unique_handle(prefix: str) -> str:
    return f"{prefix[:7]}_{secrets.token_hex(3)}"


@dataclass
class Account:
    user: users_pb.User
    token: str

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def auth(self) -> Metadata:
        return bearer(self.token)


@dataclass
class Stubs:
    """Generated stubs straight to each service (not through Envoy)."""

    users_addr: str
    tweets_addr: str
    fanout_addr: str
    timeline_addr: str
    media_addr: str
    notifications_addr: str
    channel_options: list[tuple[str, Any]] = field(default_factory=list)
    _channels: list[grpc.Channel] = field(default_factory=list)

    def __post_init__(self) -> None:
        def channel(addr: str) -> grpc.Channel:
            ch = grpc.insecure_channel(addr, options=self.channel_options)
            self._channels.append(ch)
            return ch

        self.users = users_grpc.UserServiceStub(channel(self.users_addr))
        self.tweets = tweets_grpc.TweetServiceStub(channel(self.tweets_addr))
        self.fanout = fanout_grpc.FanoutServiceStub(channel(self.fanout_addr))
        self.timeline = timeline_grpc.TimelineServiceStub(channel(self.timeline_addr))
        self.media = media_grpc.MediaServiceStub(channel(self.media_addr))
        self.notifications = notifications_grpc.NotificationServiceStub(channel(self.notifications_addr))

    @classmethod
    def through(cls, address: str, channel_options: list[tuple[str, Any]] | None = None) -> Stubs:
        """Stubs of every service at one address (Envoy's)."""
        return cls(address, address, address, address, address, address, channel_options or [])

    def close(self) -> None:
        for ch in self._channels:
            ch.close()

    def sign_up(self, prefix: str = "user") -> Account:
        handle = unique_handle(prefix)
        self.users.CreateUser(users_pb.CreateUserRequest(handle=handle, password=PASSWORD), timeout=10)
        login = self.users.Login(users_pb.LoginRequest(handle=handle, password=PASSWORD), timeout=10)
        return Account(login.user, login.token)

    def follow(self, follower: Account, followee: Account) -> users_pb.User:
        return self.users.FollowUser(
            users_pb.FollowUserRequest(user_id=followee.user_id), metadata=follower.auth, timeout=10
        ).user

    def post(self, author: Account, text: str, **kwargs: Any) -> tweets_pb.Tweet:
        return self.tweets.CreateTweet(
            tweets_pb.CreateTweetRequest(text=text, **kwargs), metadata=author.auth, timeout=10
        ).tweet

    def upload(self, owner: Account, data: bytes, content_type: str) -> media_pb.Media:
        """Media uploaded as `owner` (whole, as one message)."""
        request = media_pb.UploadMediaRequest()
        request.body.content_type, request.body.data = content_type, data
        return self.media.UploadMedia(request, metadata=owner.auth, timeout=60).media

    def home(
        self, viewer: Account, page_size: int = 100, page_token: str = ""
    ) -> timeline_pb.GetHomeTimelineResponse:
        return self.timeline.GetHomeTimeline(
            timeline_pb.GetHomeTimelineRequest(page_size=page_size, page_token=page_token),
            metadata=viewer.auth,
            timeout=10,
        )

    def home_ids(self, viewer: Account, page_size: int = 100) -> list[str]:
        """Every tweet id of the viewer's home timeline, following page tokens to the end."""
        ids: list[str] = []
        token = ""
        while True:
            page = self.home(viewer, page_size, token)
            ids.extend(t.tweet_id for t in page.tweets)
            token = page.next_page_token
            if not token:
                return ids

    def user(self, account: Account) -> users_pb.User:
        return self.users.GetUser(users_pb.GetUserRequest(user_id=account.user_id), timeout=10).user

    def snapshot(self, *accounts: Account) -> Any:
        """What a refused call must leave unchanged: the users with their profiles and counts,
        their tweets (text, likes, retweets, replies) and whom they follow."""
        users = [self.user(a).SerializeToString(deterministic=True) for a in accounts]
        tweets = [
            [
                (t.tweet_id, t.text, t.like_count, t.retweet_count, t.reply_count)
                for t in self.tweets.ListUserTweets(
                    tweets_pb.ListUserTweetsRequest(user_id=a.user_id, page_size=100), timeout=10
                ).tweets
            ]
            for a in accounts
        ]
        following = [
            [
                u.user_id
                for u in self.users.ListFollowing(
                    users_pb.ListFollowingRequest(user_id=a.user_id, page_size=100), timeout=10
                ).users
            ]
            for a in accounts
        ]
        return users, tweets, following

    def fanout_stats(self) -> fanout_pb.GetFanoutStatsResponse:
        return self.fanout.GetFanoutStats(fanout_pb.GetFanoutStatsRequest(), timeout=10)


class StreamCall(Iterator[Any], Protocol):
    """A server-streaming call made with a generated stub: its responses, and a way to end it."""

    def cancel(self) -> bool: ...


class LiveStream:
    """An open StreamHomeTimeline (or, without a viewer, StreamGlobalTimeline) read on a thread;
    events arrive on a queue."""

    def __init__(
        self,
        stub: timeline_grpc.TimelineServiceStub,
        viewer: Account | None,
        since: str = "",
        viewer_token: str | None = None,
    ) -> None:
        """The home stream of `viewer`, or without one the global stream (signed in with
        `viewer_token` if given)."""
        if viewer is None:
            call: StreamCall = stub.StreamGlobalTimeline(
                timeline_pb.StreamGlobalTimelineRequest(since_tweet_id=since),
                metadata=bearer(viewer_token) if viewer_token else None,
            )
        else:
            call = stub.StreamHomeTimeline(
                timeline_pb.StreamHomeTimelineRequest(since_tweet_id=since), metadata=viewer.auth
            )
        self._start(call)

    def _start(self, call: StreamCall) -> None:
        """Reads `call` on a thread from now on."""
        self._call = call
        self.events: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._call:
                self.events.put(event)
        except grpc.RpcError as error:
            self.events.put(error)

    def next_tweet(self, timeout: float) -> tweets_pb.Tweet:
        return self._next("tweet", timeout)  # type: ignore[no-any-return]

    def next_deletion(self, timeout: float) -> str:
        return self._next("deletion", timeout).tweet_id  # type: ignore[no-any-return]

    def _next(self, kind: str, timeout: float) -> Any:
        """The next event of this kind (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.events.get(timeout=max(deadline - time.monotonic(), 0.001))
            if isinstance(item, BaseException):
                raise item
            if item.WhichOneof("event") == kind:
                return getattr(item, kind)

    def wait_open(self, timeout: float = 5) -> LiveStream:
        """Until the stream is open (its first heartbeat: nothing posted before this counts as
        live); for a stream opened without `since`, whose first event is that heartbeat."""
        self._next("heartbeat", timeout)
        return self

    def next_event(self, timeout: float) -> timeline_pb.StreamHomeTimelineResponse:
        item = self.events.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        event: timeline_pb.StreamHomeTimelineResponse = item
        return event

    def tweets_until_quiet(self, quiet: float = 1.0) -> Iterator[tweets_pb.Tweet]:
        while True:
            try:
                yield self.next_tweet(quiet)
            except queue.Empty:
                return

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(timeout=5)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """The error a call fails with (the test fails if it succeeds)."""
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded but should have failed")


def field_violations(error: grpc.RpcError) -> list[str]:
    return [
        v.field for bad in error_details(error, error_details_pb2.BadRequest) for v in bad.field_violations
    ]


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> HttpResponse:
    """One plain HTTP/1.1 request to Envoy, from the address `source` (another 127.x address acts
    as another host) or the default one."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=15, source_address=(source, 0) if source else None
    )
    headers = {"content-type": "application/json", **(headers or {})}
    if token:
        headers["authorization"] = f"Bearer {token}"
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return HttpResponse(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


ONE_REDIS, REDIS_CLUSTER = "one-redis", "redis-cluster"
# A module (or test) marked so runs on the mesh with one Redis and again on the mesh with a local
# Redis Cluster (tests/conftest.py): `mesh`, and `stubs` with it, are each in turn; pytest orders
# the tests so that each mesh starts once.
ON_BOTH_REDIS = pytest.mark.parametrize("mesh", [ONE_REDIS, REDIS_CLUSTER], indirect=True)


def redis_client(url: str) -> redis.Redis:
    """A client of the Redis at `url`; of the whole cluster when that Redis is a cluster's node."""
    client = redis.Redis.from_url(url)
    if not client.info("cluster").get("cluster_enabled"):
        return client
    client.close()
    return cast(redis.Redis, redis.RedisCluster.from_url(url))


def listeners(r: redis.Redis, channel: str) -> int:
    """How many connections listen on `channel`: on a cluster, on every node (PUBSUB NUMSUB
    counts one node's), by classic or by sharded pub/sub (under its sharded name on the masters,
    where the live hub listens; Redis 7)."""
    if not isinstance(r, redis.RedisCluster):
        return int(r.pubsub_numsub(channel)[0][1])
    found = int(r.pubsub_numsub(channel, target_nodes=redis.RedisCluster.ALL_NODES)[0][1])
    sharded = sharded_channel(channel)
    for node in r.get_primaries():
        with contextlib.suppress(redis.ResponseError):  # Redis before 7.0: no sharded pub/sub
            found += int(r.pubsub_shardnumsub(sharded, target_nodes=node)[0][1])
    return found


class Gate:
    """A TCP proxy to `upstream` that, once closed, holds what clients send (and says so) until
    it is opened again: a peer that is slow exactly when the test wants."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._open = threading.Event()
        self._open.set()
        self.holding = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = [self._server]
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, gated: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    return
                if gated and not self._open.is_set():
                    self.holding.set()
                    self._open.wait()
                sink.sendall(data)
            except OSError:
                return

    def close_gate(self) -> None:
        self.holding.clear()
        self._open.clear()

    def open_gate(self) -> None:
        self._open.set()

    def shut(self) -> None:
        self._open.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def held_in_redis(r: redis.Redis, user_id: str) -> list[str] | None:
    """The tweet ids a home timeline holds in Redis, newest first; None when it does not exist."""
    data = r.get(home_key(int(user_id)))
    return None if data is None else [str(t) for t in unpack(data)]  # type: ignore[arg-type]


def fanned_out(r: redis.Redis, stream: str) -> bool:
    """Whether fan-out has handled every event of `stream` so far (read and acknowledged). Not
    while its stream or group is missing: after a wipe of Redis, fan-out makes them again at its next
    read."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return False
    group = next((g for g in groups if g["name"] == b"fanout"), None)
    if group is None:
        return False
    last = r.xinfo_stream(stream)["last-generated-id"]
    return bool(group["last-delivered-id"] == last and group["pending"] == 0)
