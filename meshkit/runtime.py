"""Runs a service: settings, logs, gRPC server with health, reflection and error mapping, its
PostgreSQL pool, Redis client, channels to peers and background tasks, and a graceful stop.

Health follows the dependencies: a probe of the runtime's own pool and client reports NOT_SERVING
while one of them is unreachable and SERVING again, by itself, once it answers. The health service
name `liveness` (meshkit.healthcheck.LIVENESS) is SERVING from start to stop whatever the
dependencies do: liveness probes ask it, readiness probes the overall status."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import io
import json
import logging
import math
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, Generic, TypeVar

import grpc
import psycopg
import redis.asyncio as aioredis
import redis.exceptions
import uvloop
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool
from redis.asyncio.connection import DefaultParser

from meshkit import shards, tracing
from meshkit.auth import Authenticator
from meshkit.errors import RedisOutage, is_outage_reply
from meshkit.healthcheck import LIVENESS
from meshkit.interceptors import CallFactsInterceptor, PreparedResponses
from meshkit.logs import REQUEST_ID_HEADER, configure_logging, request_id
from meshkit.metrics import MetricsServer, forget_pool, forget_redis, watch_pool, watch_redis
from meshkit.ratelimit import CLIENT_ADDRESS, CLIENT_ADDRESS_HEADER, Policies, RateLimitInterceptor
from meshkit.reads import Reads
from meshkit.settings import Networks, Settings, SettingsError
from meshkit.status import ErrorInterceptor, within
from meshkit.telemetry import TelemetryInterceptor
from meshkit.validation import ValidationInterceptor

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Settings)


class _CallDefaults(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """Gives every outgoing call a deadline unless the caller chose one (no call waits forever),
    the request id of the call being served, so one request can be followed through the logs, and
    the address of the client it serves, so that the peer counts what it does for that client
    against that client's limits (meshkit.ratelimit)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def _with_defaults(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if (current := request_id.get()) is not None and not metadata.get_all(REQUEST_ID_HEADER):
            metadata.add(REQUEST_ID_HEADER, current)
        if (client := CLIENT_ADDRESS.get()) is not None and not metadata.get_all(CLIENT_ADDRESS_HEADER):
            metadata.add(CLIENT_ADDRESS_HEADER, client)
        # wait_for_ready: a peer that is restarting delays the call (up to the deadline) instead of
        # failing it at once while the channel reconnects.
        return grpc.aio.ClientCallDetails(
            details.method,
            self._seconds if details.timeout is None else details.timeout,
            metadata,
            details.credentials,
            True if details.wait_for_ready is None else details.wait_for_ready,
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_defaults(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_defaults(details), request)


# The reply parser redis-py's asyncio client uses (hiredis's when it is installed).
_RedisParser: type[Any] = DefaultParser


class OutageAwareParser(_RedisParser):  # type: ignore[misc]
    """redis-py's reply parser, raising the error replies that mean an outage as RedisOutage
    (meshkit.errors.OUTAGE_REPLY_CODES); hiredis calls the same parse_error for each error reply."""

    @classmethod
    def parse_error(cls, response: str) -> redis.exceptions.ResponseError:
        error: redis.exceptions.ResponseError = super().parse_error(response)
        return RedisOutage(response) if is_outage_reply(response) else error


def read_only_methods(service: ServiceDescriptor) -> list[str]:
    """The methods the protos declare free of side effects (`option idempotency_level =
    NO_SIDE_EFFECTS`): safe to send again."""
    return [
        m.name
        for m in service.methods
        if m.GetOptions().idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
    ]


def retry_service_config(service: ServiceDescriptor) -> str:
    """A channel's service config: up to 4 attempts of a read-only method of `service` on
    UNAVAILABLE (with gRPC's exponential backoff and jitter). Anything else is never retried
    here: its callers decide (CreateTweet carries a request_id for that)."""
    names = [{"service": service.full_name, "method": m} for m in read_only_methods(service)]
    policy = {
        "maxAttempts": 4,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


Probe = Callable[[], Awaitable[object]]


class RecentlyReturned:
    """The pool's connection check, skipped for a connection that came back to the pool in a good
    state less than `window_seconds` ago (HikariCP's alive-bypass window, 500 ms by default).

    The check is a round trip to PostgreSQL on every borrow; a home-timeline read borrows three
    times across the mesh. A connection just used and returned idle is alive unless the server went
    away within the window; one idle longer (across a restart, say) is checked as before.
    """

    def __init__(self, window_seconds: float = 0.5) -> None:
        self._window = window_seconds
        self._returned: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    async def returned(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The pool's reset callback: runs as a connection comes back idle (never a broken one)."""
        self._returned[conn] = time.monotonic()

    async def check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        returned = self._returned.pop(conn, None)
        if returned is None or time.monotonic() - returned >= self._window:
            await AsyncConnectionPool.check_connection(conn)


async def _probe_postgres(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")


class Runtime(Generic[S]):
    """What a service's setup function builds on; everything opened here is closed on stop."""

    def __init__(self, settings: S, rate_limits: RateLimitInterceptor | None = None) -> None:
        self.settings = settings
        self._rate_limits = rate_limits or RateLimitInterceptor({})
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._probes: dict[str, Probe] = {}
        self._stopping: list[Callable[[], Awaitable[None]]] = []

    async def postgres(self, url: str, schema: str, max_size: int = 10) -> AsyncConnectionPool:
        """A pool on the database at `url` whose connections see `schema` first.

        Nothing waits on PostgreSQL longer than the RPC deadline: not for a free connection, not
        for a new one, not for a statement. Connections are checked as they leave the pool (unless
        just returned: RecentlyReturned), so the ones a restarted server dropped are replaced
        instead of failing a call.
        """
        pool = self._pool(url, schema, max_size, f"{self.settings.service}-{schema}")
        await pool.open(wait=True, timeout=30)
        self._probes[f"postgresql:{schema}"] = lambda: _probe_postgres(pool)
        return pool

    async def reads(
        self, primary: AsyncConnectionPool, replica_url: str, schema: str, max_lag_seconds: float
    ) -> Reads:
        """Where `schema`'s lag-tolerant reads go (meshkit.reads): the streaming replica at
        `replica_url` (DATABASE_READ_URL) while it answers and lags at most `max_lag_seconds`, else
        `primary`; all to `primary` when `replica_url` is empty. Health does not follow the
        replica: without it, reads go on."""
        if not replica_url:
            return Reads(primary, schema=schema)
        name = f"{self.settings.service}-{schema}-replica"
        probe_seconds = self.settings.health_probe_seconds
        # A connection attempt to a replica that is down gives up after two probes (psycopg_pool
        # would back off for minutes): the first call after that, the probe's, tries again at once.
        replica = self._pool(replica_url, schema, primary.max_size, name, reconnect_timeout=2 * probe_seconds)
        # Not waiting: a replica that is down at start is set aside like one that fails later.
        await replica.open(wait=False)
        reads = Reads(
            primary,
            replica,
            schema=schema,
            wait_seconds=min(1.0, self.settings.rpc_deadline_seconds),
            # Half the deadline: what the replica did not answer by then, the primary still can.
            limit_seconds=self.settings.rpc_deadline_seconds / 2,
            retry_seconds=probe_seconds,
            max_lag_seconds=max_lag_seconds,
        )
        self.background(reads.watch(), f"read replica {schema}")
        return reads

    def _pool(
        self, url: str, schema: str, max_size: int, name: str, reconnect_timeout: float = 300.0
    ) -> AsyncConnectionPool:
        """A pool (not opened yet) as `postgres` describes, closed and watched with the runtime;
        `reconnect_timeout` is psycopg_pool's (its default)."""
        liveness = RecentlyReturned()
        deadline = self.settings.rpc_deadline_seconds
        options = f"-c search_path={schema},public -c statement_timeout={int(deadline * 1000)}"
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={
                "options": options,
                "autocommit": True,
                # libpq's smallest useful value is 2 s.
                "connect_timeout": max(2, math.ceil(deadline)),
            },
            timeout=deadline,
            check=liveness.check,
            reset=liveness.returned,
            name=name,
            reconnect_timeout=reconnect_timeout,
        )
        self._stack.push_async_callback(pool.close)
        watch_pool(pool)
        self._stack.callback(forget_pool, pool)
        return pool

    async def redis(self) -> aioredis.Redis:
        # One server or a cluster (REDIS_CLUSTER), made in one place (meshkit.shards.connect).
        # Error replies that mean an outage (out of memory, a read-only replica...) are raised as
        # RedisOutage, a dependency failure like a lost connection.
        client = shards.connect(
            self.settings.redis_url,
            cluster=self.settings.redis_cluster,
            timeout=self.settings.rpc_deadline_seconds,
            max_connections=100,
            parser_class=OutageAwareParser,
        )
        await client.ping()
        self._stack.push_async_callback(client.aclose)
        if not shards.is_cluster(client):  # a cluster keeps a pool per node, not one to watch
            watch_redis(self.settings.service, client)
            self._stack.callback(forget_redis, self.settings.service)
        self._probes["redis"] = client.ping
        return client

    def channel(self, address: str, service: ServiceDescriptor) -> grpc.aio.Channel:
        """One shared channel per peer address, to `service` there; calls on it get the default
        deadline, and its read-only methods are retried on UNAVAILABLE (retry_service_config).

        `address` is host:port or any gRPC target; `dns:///<name>:<port>` (Kubernetes headless
        services) resolves every address of the name and balances calls over them (round_robin)."""
        if address not in self._channels:
            interceptors = [_CallDefaults(self.settings.rpc_deadline_seconds), *tracing.client_interceptors()]
            options = [
                # Reconnect quickly to a restarted peer (gRPC's default backoff grows to 2 minutes).
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2_000),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.lb_policy_name", "round_robin"),
                ("grpc.enable_retries", 1),
                ("grpc.service_config", retry_service_config(service)),
            ]
            tls = self.settings.grpc_tls
            # With GRPC_TLS_DIR the channel presents the service's certificate and accepts a peer
            # whose certificate the mesh's CA issued for the host in `address`.
            channel = (
                grpc.aio.insecure_channel(address, interceptors=interceptors, options=options)
                if tls is None
                else grpc.aio.secure_channel(
                    address, tls.channel_credentials(), interceptors=interceptors, options=options
                )
            )
            self._channels[address] = channel
            self._stack.push_async_callback(channel.close)
        return self._channels[address]

    def depends_on(self, name: str, probe: Probe) -> None:
        """Health follows `probe` too (a dependency the service opened itself, such as a blob
        store): NOT_SERVING while it fails or does not answer within the RPC deadline."""
        self._probes[name] = probe

    def limit_rates(
        self,
        redis: aioredis.Redis,
        auth: Authenticator,
        rates: object,
        trusted_proxies: Networks,
        caps: object = None,
    ) -> None:
        """Turns on the service's rate-limit policies (given to serve), at the Rate that `rates`
        holds under each name they give, and the caps `caps` holds."""
        self._rate_limits.bind(redis, auth, rates, trusted_proxies, caps)

    def probe(self, name: str, check: Probe) -> None:
        """Adds a check that health follows like a dependency's: NOT_SERVING while it raises."""
        self._probes[name] = check

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Runs `callback` when the service stops (before pools and channels close)."""
        self._stack.push_async_callback(callback)

    def on_stopping(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Runs `callback` when SIGTERM arrives, before in-flight calls get their grace period
        (to end open streams with a reconnect hint, for instance)."""
        self._stopping.append(callback)

    async def stopping(self) -> None:
        for callback in self._stopping:
            try:
                await callback()
            except Exception:
                log.exception("stopping callback failed")

    async def unreachable(self) -> list[str]:
        """The dependencies that do not answer within the RPC deadline right now."""
        names = list(self._probes)
        results = await asyncio.gather(
            *(within(self.settings.rpc_deadline_seconds, self._probes[n]()) for n in names),
            return_exceptions=True,
        )
        return [
            name for name, result in zip(names, results, strict=True) if isinstance(result, BaseException)
        ]

    async def watch_dependencies(self, health: HealthServicer, names: list[str]) -> None:
        """Keeps `health` NOT_SERVING while a dependency is unreachable, SERVING otherwise."""
        serving = True
        while True:
            await asyncio.sleep(self.settings.health_probe_seconds)
            down = await self.unreachable()
            if serving == (not down):
                continue
            serving = not down
            if serving:
                log.info("dependencies reachable again; SERVING")
                status = health_pb2.HealthCheckResponse.SERVING
            else:
                log.warning("dependency unreachable; NOT_SERVING", extra={"dependencies": down})
                status = health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ["", *names]:
                await health.set(name, status)

    def background(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        """Runs `coroutine` until the service stops; a crash is logged and stops the service."""
        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(self._on_background_done)
        self._tasks.append(task)

    def _on_background_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            log.error("background task failed; stopping", extra={"task": task.get_name()}, exc_info=error)
            signal.raise_signal(signal.SIGTERM)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()


async def _serve_health(health: HealthServicer, address: str) -> grpc.aio.Server:
    """A plain-text server at `address` with the health service alone (GRPC_HEALTH_PORT): what a
    probe that has no client certificate may ask while the gRPC port takes mutual TLS only. It
    tells SERVING or not and serves nothing else."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(address)
    await server.start()
    return server


Setup = Callable[[Runtime[S], grpc.aio.Server], Awaitable[list[str]]]
# gRPC's own default: the largest request message a service accepts.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024


async def serve(
    settings: S, setup: Setup[S], rate_limits: Policies, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
) -> None:
    """Builds the service with `setup` (which registers servicers and returns their full names),
    serves until SIGTERM or SIGINT, then stops gracefully: NOT_SERVING first, in-flight calls get
    `grace_seconds`, background work is cancelled, connections closed. `rate_limits` are the
    service's policies, turned on by its setup (Runtime.limit_rates); `max_request_bytes` the
    largest request message it takes (larger: RESOURCE_EXHAUSTED from gRPC itself)."""
    limiter = RateLimitInterceptor(rate_limits)
    runtime = Runtime(settings, limiter)
    server = grpc.aio.server(
        # The first is outermost. Every handler reads the call's metadata and peer as they were
        # when it started; telemetry sees the status ErrorInterceptor made of any failure; the rate
        # limits count every call, valid or not, and check the token of a call counted per user
        # first (a write without a live token is UNAUTHENTICATED whatever its fields); then a
        # request that breaks its proto's rules is refused; a refusal by either becomes a status
        # like any error. With tracing on (meshkit.tracing), a call's span sits inside telemetry and
        # outside the error mapping: it records the status the call ends with. Each builds its
        # wrapper of a method once (meshkit.interceptors.HandlerInterceptor), so a call runs the
        # outermost's lookup and the wrappers, nothing more; PreparedResponses wraps only the
        # serializer.
        interceptors=[
            PreparedResponses(),
            CallFactsInterceptor(),
            TelemetryInterceptor(),
            *tracing.server_interceptors(),
            ErrorInterceptor(settings.handler_timeout_seconds),
            limiter,
            ValidationInterceptor(),
        ],
        options=[
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.max_receive_message_length", max_request_bytes),
        ],
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if settings.metrics_port:
        runtime.on_close(MetricsServer(settings.listen_host, settings.metrics_port).close)
    try:
        names = await setup(runtime, server)
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server,
        )
        address = f"{settings.listen_host}:{settings.grpc_port}"
        if settings.grpc_tls is None:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, settings.grpc_tls.server_credentials())
        await server.start()
        if settings.grpc_health_port:
            health_only = await _serve_health(health, f"{settings.listen_host}:{settings.grpc_health_port}")
            runtime.on_close(lambda: health_only.stop(None))
        for name in ["", LIVENESS, *names]:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        runtime.background(runtime.watch_dependencies(health, names), "dependency-probe")
        log.info(
            "serving",
            extra={
                "address": address,
                "services": names,
                "mutual_tls": settings.grpc_tls is not None,
                "health_port": settings.grpc_health_port or None,
            },
        )

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping", extra={"grace_seconds": settings.grace_seconds})
        _watch_the_stop(settings.grace_seconds + SLOW_STOP_MARGIN_SECONDS)
        await health.enter_graceful_shutdown()
        await runtime.stopping()
        await server.stop(settings.grace_seconds)
    finally:
        await runtime.close()
        with contextlib.suppress(Exception):
            await server.stop(0)
    log.info("stopped")


# The signal on which a service writes every thread's stack to stderr (faulthandler).
DUMP_STACKS_SIGNAL = signal.SIGUSR1
# How long past its grace a stop may take before the process says what it is still waiting for.
SLOW_STOP_MARGIN_SECONDS = 5.0


def _watch_the_stop(seconds: float) -> None:
    """If the process is still alive `seconds` from now, logs every thread's stack and every
    asyncio task's (a stop that hangs names what holds it; an orchestrator kills it after its own
    grace). A daemon timer: it never keeps the process alive, and it fires even while the
    interpreter waits on a thread at exit."""
    loop = asyncio.get_running_loop()

    def report() -> None:
        threads = {t.ident: t.name for t in threading.enumerate()}
        stacks = {
            threads.get(ident, str(ident)): "".join(traceback.format_stack(frame))
            for ident, frame in sys._current_frames().items()
        }
        tasks: dict[str, str] = {}
        with contextlib.suppress(Exception):  # read from another thread: the loop may change meanwhile
            for task in list(asyncio.all_tasks(loop)):
                buffer = io.StringIO()
                task.print_stack(file=buffer)
                tasks[task.get_name()] = buffer.getvalue()
        log.error("still stopping", extra={"waited_seconds": seconds, "threads": stacks, "tasks": tasks})

    timer = threading.Timer(seconds, report)
    timer.daemon = True
    timer.start()


def main(
    service: str,
    load_settings: Callable[[], S],
    setup: Setup[S],
    rate_limits: Policies | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> None:
    """The body of `python -m <service>_svc`: its settings (or a message naming what is wrong),
    then the service, with its rate-limit policies and request size limit."""
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.exit(f"{service}_svc: bad configuration: {error}")
    configure_logging(settings.service, settings.log_level)
    # SIGUSR1 writes every thread's stack to stderr from C, even while the event loop is blocked
    # (what a stop that hangs before its first log line needs; devstack sends it before a SIGKILL).
    faulthandler.register(DUMP_STACKS_SIGNAL, all_threads=True)
    tracer_provider = tracing.configure(settings.service)
    # uvloop: the event loop on libuv, measurably less CPU per call than asyncio's own (README,
    # "Profiling the read and post paths").
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            runner.run(serve(settings, setup, rate_limits or {}, max_request_bytes))
        finally:
            if tracer_provider is not None:
                tracer_provider.shutdown()  # sends the spans not sent yet
