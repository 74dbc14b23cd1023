"""The budgets the public services share, per client: every write of an account, in users_svc or
tweets_svc, draws from the same `write` buckets (per user and per client address), every read
from the same `read` buckets, at the rates RATE_LIMIT_WRITE_PER_USER, RATE_LIMIT_WRITE_PER_ADDRESS,
RATE_LIMIT_READ_PER_USER and RATE_LIMIT_READ_PER_ADDRESS. A read is counted per user when it
needs a token (the home timeline); the others are anonymous, and counted per address."""

from __future__ import annotations

from dataclasses import dataclass

from meshkit.ratelimit import Limit, Scope
from meshkit.settings import Rate


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRates:
    """Mastodon's spirit for writes: 300 per 5 minutes per account. Reads: 100 a second on average
    per client address, 50 per account, in bursts of 30 seconds' worth. A client address gets more
    than one account's worth, as several people may share one (NAT)."""

    write_per_user: Rate = Rate(300, 300)
    write_per_address: Rate = Rate(1500, 300)
    read_per_user: Rate = Rate(1500, 30)
    read_per_address: Rate = Rate(3000, 30)


WRITE = (Limit("write", Scope.USER, "write_per_user"), Limit("write", Scope.ADDRESS, "write_per_address"))
READ = (Limit("read", Scope.ADDRESS, "read_per_address"),)
READ_SIGNED_IN = (*READ, Limit("read", Scope.USER, "read_per_user"))
