"""Single-use, expiring tokens mailed to prove control of an address: email verification and
password reset.

A token is 256 random bits, given to its holder once as 43 URL-safe base64 characters (it goes in
a link). Only its SHA-256 is stored, with what it is for: a purpose, an account, the address it
was mailed to (its `EmailAddress.key`) and an expiry. Using it checks all of that and marks it
used, in the transaction that makes the change it allows, so it works once. A database dump
therefore holds no usable token; a token is as hard to guess as a session token.

Each way a token can be refused has its own reason (`TokenRefusal`), for the status and the log.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

TOKEN_BYTES = 32  # 256 bits
TOKEN_LENGTH = 43  # base64url of 32 bytes, without padding
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


class TokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


# How long a token is good for: a reset link is a password, so it lives short (OWASP's advice);
# a verification link may wait in an inbox over a weekend.
LIFETIMES = {
    TokenPurpose.VERIFY_EMAIL: timedelta(days=3),
    TokenPurpose.RESET_PASSWORD: timedelta(hours=1),
}


class TokenRefusal(enum.StrEnum):
    """Why a token was refused; the values are the ErrorInfo reasons the service will answer with."""

    MALFORMED = "TOKEN_MALFORMED"  # not 43 base64url characters of a 256-bit value
    UNKNOWN = "TOKEN_UNKNOWN"  # no such token was ever issued (or it was deleted)
    WRONG_PURPOSE = "TOKEN_WRONG_PURPOSE"  # e.g. a verification token given to reset a password
    WRONG_ACCOUNT = "TOKEN_WRONG_ACCOUNT"  # issued for another account than the one acting
    USED = "TOKEN_USED"  # already used once
    EXPIRED = "TOKEN_EXPIRED"
    ADDRESS_CHANGED = "TOKEN_ADDRESS_CHANGED"  # the account's address is no longer the one mailed


_MESSAGES = {
    TokenRefusal.MALFORMED: "the token is malformed",
    TokenRefusal.UNKNOWN: "the token is not valid",
    TokenRefusal.WRONG_PURPOSE: "the token is not for this",
    TokenRefusal.WRONG_ACCOUNT: "the token belongs to another account",
    TokenRefusal.USED: "the token has already been used",
    TokenRefusal.EXPIRED: "the token has expired; ask for a new one",
    TokenRefusal.ADDRESS_CHANGED: "the token was sent to an address the account no longer has",
}


class TokenRefused(Exception):
    """A token cannot be used; `reason` says why and the message says it in words."""

    def __init__(self, reason: TokenRefusal) -> None:
        super().__init__(_MESSAGES[reason])
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What is stored of a token (one row; see the README's draft schema)."""

    token_hash: bytes
    purpose: TokenPurpose
    account_id: int
    address_key: str
    create_time: datetime
    expire_time: datetime
    use_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: `secret` goes into the mail (and nowhere else), `record` into the database."""

    secret: str
    record: TokenRecord


def issue_token(
    purpose: TokenPurpose,
    account_id: int,
    address_key: str,
    now: datetime,
    lifetime: timedelta | None = None,
) -> IssuedToken:
    """A fresh token for `purpose` on `account_id`, mailed to `address_key`, good until now + lifetime."""
    secret = "-"
    while secret.startswith("-"):  # drawn again: a command line would take it for an option
        raw = secrets.token_bytes(TOKEN_BYTES)
        secret = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    record = TokenRecord(
        token_hash=hashlib.sha256(raw).digest(),
        purpose=purpose,
        account_id=account_id,
        address_key=address_key,
        create_time=now,
        expire_time=now + (lifetime if lifetime is not None else LIFETIMES[purpose]),
    )
    return IssuedToken(secret, record)


def token_hash(secret: str) -> bytes:
    """What a token is looked up by; raises TokenRefused(MALFORMED) for anything issue_token could
    not have produced (wrong length or alphabet, padding, non-canonical trailing bits)."""
    if not isinstance(secret, str) or not _TOKEN_SHAPE.fullmatch(secret):
        raise TokenRefused(TokenRefusal.MALFORMED)
    try:
        raw = base64.urlsafe_b64decode(secret + "=")
    except binascii.Error:
        raise TokenRefused(TokenRefusal.MALFORMED) from None
    # 43 characters carry 258 bits: the last 2 must be zero, so each token has one spelling.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != secret:
        raise TokenRefused(TokenRefusal.MALFORMED)
    return hashlib.sha256(raw).digest()


def check_token(
    record: TokenRecord | None,
    *,
    purpose: TokenPurpose,
    now: datetime,
    account_id: int | None = None,
    address_key: str | None = None,
) -> TokenRecord:
    """The record, used at `now`, if the token it stores may be used for `purpose`; else raises
    TokenRefused. `record` is what the token's hash found (None: nothing). `account_id`, when
    given, is the account acting (a signed-in user), which the token must be for; `address_key`,
    when given, is the account's address now, which must be the one the token was mailed to.

    The caller reads the record FOR UPDATE and stores the returned one (its `use_time` set) in the
    same transaction as the change the token allows, so two concurrent uses cannot both pass.
    """
    if record is None:
        raise TokenRefused(TokenRefusal.UNKNOWN)
    if record.purpose != purpose:
        raise TokenRefused(TokenRefusal.WRONG_PURPOSE)
    if account_id is not None and record.account_id != account_id:
        raise TokenRefused(TokenRefusal.WRONG_ACCOUNT)
    if record.use_time is not None:
        raise TokenRefused(TokenRefusal.USED)
    if now >= record.expire_time:
        raise TokenRefused(TokenRefusal.EXPIRED)
    if address_key is not None and record.address_key != address_key:
        raise TokenRefused(TokenRefusal.ADDRESS_CHANGED)
    return dataclasses.replace(record, use_time=now)
