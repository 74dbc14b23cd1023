"""Rate limits and caps: each service's table of policies, applied by a server interceptor.

A policy names what a method draws from:
- `Limit`s: buckets counted atomically in Redis with GCRA (the generic cell rate algorithm, a token
  bucket kept as one timestamp per key), so every replica shares them, each per user (from the
  token), per client address or per value of a request field it names (ignoring case; a call that
  leaves the field empty is not counted in that bucket): per `handle` for sign-in, say, so that
  guessing one account's password is slow from any number of addresses. Each at a rate the
  service's settings name. A call is allowed only if every bucket has room, and only then are they
  all charged. Buckets are keyed by name, so services whose policies name the same bucket share it.
- `Cap`s, for server streams: at most so many open at once per user, per client address or in
  the process, counted in this process (a stream is held by one process for its whole life).
Refused calls get RESOURCE_EXHAUSTED with a RetryInfo saying when to come back (HTTP 429 with
Retry-After via Envoy).

The client address is the peer's, or when the peer is a trusted proxy (Envoy, or another service
of the mesh passing on the address of the client it serves), the x-envoy-external-address it sent
(else its last x-forwarded-for hop). IPv6 clients are counted by their /64, as one host usually
has a whole /64 to choose addresses from. A service passes the address of the client it serves on
to the peers it calls (CLIENT_ADDRESS), so a public read made on a client's behalf (the global
stream's replay) counts against that client, not against the service.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import logging
import math
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.protobuf.descriptor import ServiceDescriptor

from meshkit.auth import Authenticator, Metadata, bearer_token, cache_key, session_of, unexpired
from meshkit.errors import Internal, ResourceExhausted
from meshkit.interceptors import Handler, HandlerInterceptor
from meshkit.settings import Networks, Rate
from meshkit.shards import SpreadScript, is_cluster, nodes_of

log = logging.getLogger(__name__)


class Scope(enum.Enum):
    USER = "user"
    ADDRESS = "address"
    FIELD = "field"
    PROCESS = "process"  # caps only: every call of the process together


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket a call draws from: `rate` (the name of a Rate in the service's rate settings)
    counted per `scope` (per value of the request's `field` for Scope.FIELD)."""

    bucket: str
    scope: Scope
    rate: str
    field: str = ""

    def __post_init__(self) -> None:
        if (self.scope is Scope.FIELD) != bool(self.field):
            raise ValueError("a limit names a request field exactly when its scope is Scope.FIELD")


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `limit` (the name of an int in the service's cap settings) streams of the bucket
    open at once per `scope`, in this process."""

    bucket: str
    scope: Scope
    limit: str


Policy = tuple[Limit | Cap, ...]
# The header by which a trusted peer (Envoy, a service of the mesh) names the client it serves.
CLIENT_ADDRESS_HEADER = "x-envoy-external-address"
# The address of the client the current call serves; the runtime's channels pass it on to peers.
CLIENT_ADDRESS: ContextVar[str | None] = ContextVar("client_address", default=None)
# A service's policies: full method name ("/pkg.Service/Method") -> the buckets it draws from.
Policies = Mapping[str, Policy]


def method_name(service: ServiceDescriptor, method: str) -> str:
    """The full name of `method` of a service descriptor, as policies and interceptors see it."""
    return f"/{service.full_name}/{service.methods_by_name[method].name}"


# ARGV[1]: how many of the buckets are the caller's, n. When n > 0, KEYS[1] is the caller's
# session cache key (meshkit.auth) and the caller's buckets are ARGV[2..n+1] followed by the user id
# the session names: the session is read and the call charged in one round trip (a key derived
# from what the script reads: single-node Redis only, see RateLimiter.charge_caller). The other
# buckets are the remaining KEYS. Then, per bucket (the caller's first), the emission interval and
# the burst window, in ms. Returns {the session (nil when not cached; nothing charged), the wait}.
# The theoretical arrival time (TAT) of each key moves one interval per allowed call; a call is
# refused while any TAT is more than a window ahead of now. All or nothing, in one script.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local n = tonumber(ARGV[1])
local keys, session = {}, false
if n > 0 then
  session = redis.call('GET', KEYS[1])
  if not session then return {false, 0} end
  local user, expiry = string.match(session, '^(%d+):(%d+)$')
  -- Expired or unreadable: the caller refuses it (UNAUTHENTICATED), uncharged.
  if not user or tonumber(expiry) * 1000 <= now then return {session, 0} end
  for i = 1, n do keys[i] = ARGV[1 + i] .. user end
end
for i = (n > 0 and 2 or 1), #KEYS do keys[#keys + 1] = KEYS[i] end
local wait = 0
local tats = {}
for i, key in ipairs(keys) do
  local interval = tonumber(ARGV[n + 2 * i])
  local window = tonumber(ARGV[n + 2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat + interval
  local allowed_at = tats[i] - window
  if allowed_at > now and allowed_at - now > wait then wait = allowed_at - now end
end
if wait > 0 then return {session, wait} end
for i, key in ipairs(keys) do
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', string.format('%.0f', tats[i] - now))
end
return {session, 0}
"""


def _interval_and_window(rate: Rate) -> tuple[int, int]:
    window = max(int(rate.seconds * 1000), 1)
    return max(window // rate.count, 1), window


class RateLimiter:
    """Charges buckets in Redis; `charge` answers how many milliseconds to wait (0: allowed)."""

    def __init__(self, redis: aioredis.Redis, rates: object) -> None:
        self._redis = redis
        self._rates = rates
        self._script = SpreadScript(redis, _GCRA)
        # The caller's session and buckets in one script: on one Redis only (a cluster's keys
        # derived in a script could live on another node).
        self.charges_callers = not is_cluster(redis)

    async def charge(self, buckets: Sequence[tuple[str, Rate]]) -> int:
        """All or nothing on one server. On a Redis Cluster the buckets of a call may live on
        several nodes: all or nothing per node, node after node, stopping at the first refusal
        (a bucket charged on an earlier node stays charged: a refused call may cost one token)."""
        keys = [key for key, _ in buckets]
        for node, positions in nodes_of(self._redis, keys):
            args = [0, *(part for n in positions for part in _interval_and_window(buckets[n][1]))]
            _, wait = await self._script.run_on(node, [keys[n] for n in positions], args)
            if wait:
                return int(wait)
        return 0

    async def charge_caller(
        self,
        session_key: str,
        callers: Sequence[tuple[str, Rate]],
        others: Sequence[tuple[str, Rate]],
    ) -> tuple[bytes | None, int]:
        """Reads the caller's session from its cache key and charges, all or nothing, the caller's
        buckets (each key a prefix the user id completes) and the `others`, in one round trip
        (single-node Redis: `charges_callers`). Answers the cached session (None: not cached,
        nothing charged) and the wait in ms."""
        args: list[str | int] = [
            len(callers),
            *(prefix for prefix, _ in callers),
            *(part for _, rate in (*callers, *others) for part in _interval_and_window(rate)),
        ]
        session, wait = await self._script.run_on(None, [session_key, *(key for key, _ in others)], args)
        return session, int(wait)

    def rate(self, limit: Limit) -> Rate:
        rate: Rate = getattr(self._rates, limit.rate)
        return rate


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def peer_address(peer: str) -> Address | None:
    """The IP of a gRPC peer string: `ipv4:192.0.2.1:443`, `ipv6:[2001:db8::1]:443` (grpcio
    percent-encodes the brackets: `ipv6:%5B2001:db8::1%5D:443`); None for a unix socket and the like."""
    kind, _, rest = urllib.parse.unquote(peer).partition(":")
    if kind not in {"ipv4", "ipv6"}:
        return None
    return _address(rest.rpartition(":")[0])


def _header(metadata: Metadata, name: str) -> str | None:
    values = [v for k, v in metadata or () if k == name]
    if not values:
        return None
    return values[-1] if isinstance(values[-1], str) else values[-1].decode("latin-1")


def client_address(peer: str, metadata: Metadata, trusted_proxies: Networks) -> str:
    """Who is calling: the peer's IP, or, when the peer is a trusted proxy, the client it names in
    x-envoy-external-address, else the address it appended last to x-forwarded-for (earlier hops
    are whatever the client claimed, so they are ignored)."""
    address = peer_address(peer)
    if address is None:
        return peer  # a unix socket or an unexpected form: still one key per peer
    if any(address in network for network in trusted_proxies):
        external = _header(metadata, CLIENT_ADDRESS_HEADER)
        forwarded = _header(metadata, "x-forwarded-for")
        for named in (external, forwarded.rsplit(",", 1)[-1] if forwarded else None):
            if named is not None and (client := _address(named)) is not None:
                return str(client)
    return str(address)


def address_key(address: str) -> str:
    """What an address is counted by: itself for IPv4, its /64 for IPv6."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


class OpenStreams:
    """How many streams of each cap's key are open in this process."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, keys: Sequence[tuple[str, int]]) -> Iterator[None]:
        """Holds one of each (key, at most) for as long as the stream is open; RESOURCE_EXHAUSTED
        when a key is at its cap (nothing is held then)."""
        full = [key for key, most in keys if self._open[key] >= most]
        if full:
            raise ResourceExhausted(
                message="too many open streams; close one or retry later",
                reason="TOO_MANY_STREAMS",
                metadata={"caps": ",".join(sorted(key.rsplit(":", 1)[0] for key in full))},
                retry_after_seconds=5.0,
            )
        for key, _ in keys:
            self._open[key] += 1
        try:
            yield
        finally:
            for key, _ in keys:
                self._open[key] -= 1
                if self._open[key] <= 0:
                    del self._open[key]


class RateLimitInterceptor(HandlerInterceptor):
    """Applies a service's `policies` before the handler runs (a stream's for as long as it is
    open), and makes the client's address the current call's (CLIENT_ADDRESS). It needs the
    service's Redis, authenticator and settings, which exist only after the server is built, so
    the service binds them in its setup; a limited method called before that fails closed
    (INTERNAL), never unlimited."""

    def __init__(self, policies: Policies) -> None:
        super().__init__()
        self._policies = policies
        self._limiter: RateLimiter | None = None
        self._auth: Authenticator | None = None
        self._trusted_proxies: Networks = ()
        self._caps: object = None
        self._open = OpenStreams()

    def bind(
        self,
        redis: aioredis.Redis,
        auth: Authenticator,
        rates: object,
        trusted_proxies: Networks,
        caps: object = None,
    ) -> None:
        """`rates` holds a Rate under each name the policies' limits give; `caps` an int under
        each name their caps give."""
        self._limiter = RateLimiter(redis, rates)
        self._auth = auth
        self._trusted_proxies = trusted_proxies
        self._caps = caps

    def _address(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        return client_address(context.peer(), context.invocation_metadata(), self._trusted_proxies)

    async def check(
        self,
        method: str,
        policy: Policy,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Charges the policy's rate limits (its caps are held by `opened`)."""
        limits = [limit for limit in policy if isinstance(limit, Limit)]
        if not limits:
            return
        if self._limiter is None or self._auth is None:
            log.error("rate limits are not bound; refusing a limited call", extra={"method": method})
            raise Internal("internal error", reason="INTERNAL")
        limiter, auth = self._limiter, self._auth
        callers = [limit for limit in limits if limit.scope is Scope.USER]
        others = []
        for limit in limits:
            if limit.scope is not Scope.USER:
                subject = await self._subject(limit.scope, request, context, limit.field)
                if subject is not None:
                    others.append((self._key(limit, subject), limiter.rate(limit)))
        wait_ms: int | None = None  # None: not charged yet
        if callers and limiter.charges_callers and auth.known(context) is None:
            # The call needs a valid token anyway: its session is read where its buckets are
            # charged (one round trip), an invalid one refused uncharged, and the session found is
            # the handler's too (Authenticator.caller: one check per call).
            token = bearer_token(context.invocation_metadata())
            prefixes = [(self._key(limit, ""), limiter.rate(limit)) for limit in callers]
            cached, wait_ms = await limiter.charge_caller(cache_key(token), prefixes, others)
            if cached is not None:
                auth.remember(context, unexpired(session_of(cached)))
            else:  # not in the session cache (nothing charged): its owner knows
                auth.remember(context, await auth.from_owner(token))
                wait_ms = None
        if wait_ms is None:
            user = str(await auth.caller_id(context)) if callers else ""
            wait_ms = await limiter.charge(
                [(self._key(limit, user), limiter.rate(limit)) for limit in callers] + others
            )
        if wait_ms > 0:
            raise ResourceExhausted(
                message=f"too many requests; retry in {max(math.ceil(wait_ms / 1000), 1)} s",
                reason="RATE_LIMITED",
                metadata={"limits": ",".join(sorted({limit.bucket for limit in limits}))},
                retry_after_seconds=wait_ms / 1000,
            )

    @contextlib.asynccontextmanager
    async def opened(
        self, method: str, policy: Policy, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        """Holds the policy's caps while the stream is open."""
        caps = [cap for cap in policy if isinstance(cap, Cap)]
        if caps and self._caps is None:
            log.error("stream caps are not bound; refusing a capped call", extra={"method": method})
            raise Internal("internal error", reason="INTERNAL")
        keys = []
        for cap in caps:
            subject = "" if cap.scope is Scope.PROCESS else await self._subject(cap.scope, request, context)
            if subject is not None:
                keys.append(
                    (f"{cap.bucket}:{cap.scope.value}:{subject}", int(getattr(self._caps, cap.limit)))
                )
        with self._open.hold(keys):
            yield

    @staticmethod
    def _key(limit: Limit, subject: str) -> str:
        """A bucket's key for one subject (a caller's: its prefix, the user id appended)."""
        return f"ratelimit:{limit.bucket}:{limit.field or limit.scope.value}:{subject}"

    async def _subject(
        self, scope: Scope, request: Any, context: grpc.aio.ServicerContext[Any, Any], field: str = ""
    ) -> str | None:
        """Whom the call is counted as in a bucket of `scope`; None: not counted in it."""
        if scope is Scope.USER:
            assert self._auth is not None
            # The call needs a valid token anyway: an invalid one is refused here, uncharged. The
            # session found is the handler's too (Authenticator.caller: one check per call).
            return str(await self._auth.caller_id(context))
        if scope is Scope.FIELD:
            # Bounded so that a huge value cannot make a huge key; 256 covers any email address.
            value = str(getattr(request, field, "")).strip()[:256].lower()
            return value or None
        return address_key(self._address(context))

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        policy = self._policies.get(method, ())

        async def limited(request: Any, context: Any) -> Any:
            CLIENT_ADDRESS.set(self._address(context))
            await self.check(method, policy, request, context)
            return await behavior(request, context)

        return limited

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        """An upload in chunks is charged once, as it opens (its requests are not read yet, so
        its policy may count per user and per address, not per request field; nor hold caps)."""
        policy = self._policies.get(method, ())
        if any(limit.scope is Scope.FIELD or isinstance(limit, Cap) for limit in policy):
            raise TypeError(f"{method}: a client stream's policy counts per user and address only")

        async def limited(requests: Any, context: Any) -> Any:
            CLIENT_ADDRESS.set(self._address(context))
            await self.check(method, policy, None, context)
            return await behavior(requests, context)

        return limited

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        policy = self._policies.get(method, ())

        async def limited(request: Any, context: Any) -> AsyncIterator[Any]:
            CLIENT_ADDRESS.set(self._address(context))
            await self.check(method, policy, request, context)
            async with self.opened(method, policy, request, context):
                async for response in behavior(request, context):
                    yield response

        return limited


__all__ = [
    "CLIENT_ADDRESS",
    "CLIENT_ADDRESS_HEADER",
    "Cap",
    "Limit",
    "OpenStreams",
    "Policies",
    "Policy",
    "RateLimitInterceptor",
    "RateLimiter",
    "Scope",
    "address_key",
    "client_address",
    "method_name",
]
