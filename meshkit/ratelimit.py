"""Rate limits: each service's table of policies, applied by a server interceptor, counted
atomically in Redis with GCRA (the generic cell rate algorithm, a token bucket kept as one
timestamp per key).

A policy names the buckets a method draws from, each per user (from the token), per client address
(the peer, or the last x-forwarded-for hop when the peer is a trusted proxy such as Envoy) or per
value of a request field it names (ignoring case; a call that leaves the field empty is not counted
in that bucket): per `handle` for sign-in, say, so that guessing one account's password is slow
from any number of addresses. Each at a rate the service's settings name. A call is allowed only if every
bucket has room, and only then are they all charged. Refused calls get RESOURCE_EXHAUSTED with a
RetryInfo saying when to come back (HTTP 429 with Retry-After via Envoy). Buckets are keyed by
name, so services whose policies name the same bucket share it.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.protobuf.descriptor import ServiceDescriptor

from meshkit.auth import Authenticator, Metadata
from meshkit.errors import Internal, ResourceExhausted
from meshkit.interceptors import Handler, HandlerInterceptor
from meshkit.settings import Networks, Rate

log = logging.getLogger(__name__)


class Scope(enum.Enum):
    USER = "user"
    ADDRESS = "address"
    FIELD = "field"


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket a call draws from: `rate` (the name of a Rate in the service's rate settings)
    counted per `scope` (Scope.FIELD: per value of the request's `field`)."""

    bucket: str
    scope: Scope
    rate: str
    field: str = ""

    def __post_init__(self) -> None:
        if (self.scope is Scope.FIELD) != bool(self.field):
            raise ValueError("a limit names a request field exactly when its scope is Scope.FIELD")


Policy = tuple[Limit, ...]
# A service's policies: full method name ("/pkg.Service/Method") -> the buckets it draws from.
Policies = Mapping[str, Policy]


def method_name(service: ServiceDescriptor, method: str) -> str:
    """The full name of `method` of a service descriptor, as policies and interceptors see it."""
    return f"/{service.full_name}/{service.methods_by_name[method].name}"


# KEYS: one per bucket. ARGV: per bucket, the emission interval and the burst window, in ms.
# The theoretical arrival time (TAT) of each key moves one interval per allowed call; a call is
# refused while any TAT is more than a window ahead of now. All or nothing, in one script.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat + interval
  local allowed_at = tats[i] - window
  if allowed_at > now and allowed_at - now > wait then wait = allowed_at - now end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', string.format('%.0f', tats[i] - now))
end
return 0
"""


def _interval_and_window(rate: Rate) -> tuple[int, int]:
    window = max(int(rate.seconds * 1000), 1)
    return max(window // rate.count, 1), window


class RateLimiter:
    """Charges buckets in Redis; `charge` answers how many milliseconds to wait (0: allowed)."""

    def __init__(self, redis: aioredis.Redis, rates: object) -> None:
        self._rates = rates
        self._script = redis.register_script(_GCRA)

    async def charge(self, buckets: Sequence[tuple[str, Rate]]) -> int:
        keys = [key for key, _ in buckets]
        args = [part for _, rate in buckets for part in _interval_and_window(rate)]
        return int(await self._script(keys=keys, args=args))

    def rate(self, limit: Limit) -> Rate:
        rate: Rate = getattr(self._rates, limit.rate)
        return rate


def client_address(
    peer: str,
    metadata: Metadata,
    trusted_proxies: Networks,
) -> str:
    """Who is calling: the peer's IP, or, when the peer is a trusted proxy, the address it appended
    last to x-forwarded-for (earlier hops are whatever the client claimed, so they are ignored)."""
    kind, _, rest = peer.partition(":")
    host = rest.rpartition(":")[0].strip("[]") if kind in {"ipv4", "ipv6"} else peer
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a unix socket or an unexpected form: still one key per peer
    if any(address in network for network in trusted_proxies):
        forwarded = [v for k, v in metadata or () if k == "x-forwarded-for"]
        if forwarded:
            value = forwarded[-1] if isinstance(forwarded[-1], str) else forwarded[-1].decode("latin-1")
            last = value.rsplit(",", 1)[-1].strip()
            try:
                return str(ipaddress.ip_address(last))
            except ValueError:
                pass
    return str(address)


class RateLimitInterceptor(HandlerInterceptor):
    """Applies a service's `policies` before the handler runs. It needs the service's Redis,
    authenticator and settings, which exist only after the server is built, so the service binds
    them in its setup; a limited method called before that fails closed (INTERNAL), never
    unlimited."""

    def __init__(self, policies: Policies) -> None:
        super().__init__()
        self._policies = policies
        self._limiter: RateLimiter | None = None
        self._auth: Authenticator | None = None
        self._trusted_proxies: Networks = ()

    def bind(
        self, redis: aioredis.Redis, auth: Authenticator, rates: object, trusted_proxies: Networks
    ) -> None:
        """`rates` holds a Rate under each name the policies' limits give."""
        self._limiter = RateLimiter(redis, rates)
        self._auth = auth
        self._trusted_proxies = trusted_proxies

    async def check(
        self,
        method: str,
        policy: tuple[Limit, ...],
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        if self._limiter is None or self._auth is None:
            log.error("rate limits are not bound; refusing a limited call", extra={"method": method})
            raise Internal("internal error", reason="INTERNAL")
        buckets = []
        for limit in policy:
            subject = await self._subject(limit, request, context)
            if subject is None:
                continue
            key = f"ratelimit:{limit.bucket}:{limit.field or limit.scope.value}:{subject}"
            buckets.append((key, self._limiter.rate(limit)))
        wait_ms = await self._limiter.charge(buckets)
        if wait_ms > 0:
            raise ResourceExhausted(
                message=f"too many requests; retry in {max(math.ceil(wait_ms / 1000), 1)} s",
                reason="RATE_LIMITED",
                metadata={"limits": ",".join(sorted({limit.bucket for limit in policy}))},
                retry_after_seconds=wait_ms / 1000,
            )

    async def _subject(
        self, limit: Limit, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> str | None:
        """Whom the call is counted as in `limit`'s bucket; None: not counted in it."""
        scope = limit.scope
        if scope is Scope.USER:
            assert self._auth is not None
            # The call needs a valid token anyway: an invalid one is refused here, uncharged. The
            # session found is the handler's too (Authenticator.caller: one check per call).
            return str(await self._auth.caller_id(context))
        if scope is Scope.FIELD:
            # Bounded so that a huge value cannot make a huge key; 256 covers any email address.
            value = str(getattr(request, limit.field, "")).strip()[:256].lower()
            return value or None
        return client_address(context.peer(), context.invocation_metadata(), self._trusted_proxies)

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        policy = self._policies.get(method)
        if policy is None:
            return behavior

        async def limited(request: Any, context: Any) -> Any:
            await self.check(method, policy, request, context)
            return await behavior(request, context)

        return limited

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        # Streams are not limited here (their cost is the open stream, bounded by Envoy): a policy
        # naming one is a mistake, refused loudly rather than silently not applied.
        if method in self._policies:
            raise TypeError(f"{method}: rate-limit policies apply to unary methods only")
        return behavior


__all__ = [
    "Limit",
    "Policies",
    "Policy",
    "RateLimitInterceptor",
    "RateLimiter",
    "Scope",
    "client_address",
    "method_name",
]
