"""The write budget users_svc and tweets_svc share: every write of an account, in either service,
draws from the same buckets (`write`, per user and per client address), at the rates
RATE_LIMIT_WRITE_PER_USER and RATE_LIMIT_WRITE_PER_ADDRESS."""

from __future__ import annotations

from dataclasses import dataclass

from meshkit.ratelimit import Limit, Scope
from meshkit.settings import Rate


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRates:
    """Mastodon's spirit: 300 writes per 5 minutes per account. A client address gets more than
    one account's worth, as several people may share one (NAT)."""

    write_per_user: Rate = Rate(300, 300)
    write_per_address: Rate = Rate(1500, 300)


WRITE = (Limit("write", Scope.USER, "write_per_user"), Limit("write", Scope.ADDRESS, "write_per_address"))
