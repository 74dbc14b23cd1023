"""Single-use, expiring tokens: what is stored, and each way a token is refused."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from mail.tokens import (
    LIFETIMES,
    TOKEN_LENGTH,
    TokenPurpose,
    TokenRecord,
    TokenRefusal,
    TokenRefused,
    check_token,
    issue_token,
    token_hash,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ANN, BOB = 101, 202
VERIFY, RESET = TokenPurpose.VERIFY_EMAIL, TokenPurpose.RESET_PASSWORD


# The stored records by hash, as the table will hold them.
STORE: dict[bytes, TokenRecord] = {}


def refusal(
    secret: str,
    purpose: TokenPurpose = VERIFY,
    now: datetime = NOW,
    account_id: int | None = None,
    address_key: str | None = None,
) -> TokenRefusal:
    """Why `secret` is refused when checked against what STORE holds for it, as a service would."""
    with pytest.raises(TokenRefused) as refused:
        record = STORE.get(token_hash(secret))
        check_token(record, purpose=purpose, now=now, account_id=account_id, address_key=address_key)
    return refused.value.reason


def issued(purpose: TokenPurpose = VERIFY, account: int = ANN, address: str = "ann@example.com") -> str:
    token = issue_token(purpose, account, address, NOW)
    STORE[token.record.token_hash] = token.record
    return token.secret


def test_a_token_is_256_random_bits_and_only_its_hash_is_kept() -> None:
    token = issue_token(VERIFY, ANN, "ann@example.com", NOW)
    assert len(token.secret) == TOKEN_LENGTH
    raw = base64.urlsafe_b64decode(token.secret + "=")
    assert len(raw) == 32
    assert token.record.token_hash == hashlib.sha256(raw).digest() == token_hash(token.secret)
    assert token.secret.encode() not in repr(token.record).encode()
    assert issue_token(VERIFY, ANN, "ann@example.com", NOW).secret != token.secret


def test_no_token_begins_with_a_dash() -> None:
    """`tweetmesh verify-email TOKEN` would take such a token for an option (1 token in 64 did)."""
    drawn = [issue_token(RESET, ANN, "ann@example.com", NOW).secret for _ in range(2000)]
    assert not [secret for secret in drawn if secret.startswith("-")]
    assert any("-" in secret for secret in drawn)  # the dash is still in the alphabet


def test_purpose_account_address_and_expiry_are_bound_to_it() -> None:
    record = issue_token(RESET, BOB, "bob@example.com", NOW).record
    assert (record.purpose, record.account_id, record.address_key) == (RESET, BOB, "bob@example.com")
    assert record.create_time == NOW
    assert record.expire_time == NOW + LIFETIMES[RESET] == NOW + timedelta(hours=1)
    assert record.use_time is None
    assert issue_token(
        VERIFY, BOB, "b@example.com", NOW, timedelta(minutes=5)
    ).record.expire_time == NOW + timedelta(minutes=5)


def test_a_good_token_is_accepted_once_and_marked_used() -> None:
    secret = issued()
    record = STORE[token_hash(secret)]
    used = check_token(record, purpose=VERIFY, now=NOW, account_id=ANN, address_key="ann@example.com")
    assert used.use_time == NOW
    STORE[used.token_hash] = used
    assert refusal(secret) is TokenRefusal.USED


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "short",
        "A" * (TOKEN_LENGTH - 1),
        "A" * (TOKEN_LENGTH + 1),
        "A" * (TOKEN_LENGTH - 1) + "=",  # padding
        "A" * (TOKEN_LENGTH - 1) + "+",  # standard base64, not URL-safe
        "A" * (TOKEN_LENGTH - 1) + "B",  # the 2 spare bits set: a second spelling of some token
        "A" * (TOKEN_LENGTH - 2) + "é" + "A",
        "A" * 20 + "\x00" + "A" * 22,
        "../" * 14 + "A",
    ],
)
def test_a_malformed_token_is_refused_before_any_look_up(secret: str) -> None:
    with pytest.raises(TokenRefused) as refused:
        token_hash(secret)
    assert refused.value.reason is TokenRefusal.MALFORMED


def test_a_token_never_issued_is_unknown() -> None:
    assert refusal("A" * TOKEN_LENGTH) is TokenRefusal.UNKNOWN


def test_a_token_for_another_purpose_is_refused() -> None:
    assert refusal(issued(VERIFY), purpose=RESET) is TokenRefusal.WRONG_PURPOSE
    assert refusal(issued(RESET), purpose=VERIFY) is TokenRefusal.WRONG_PURPOSE


def test_a_token_of_another_account_is_refused() -> None:
    assert refusal(issued(account=BOB), account_id=ANN) is TokenRefusal.WRONG_ACCOUNT


def test_a_token_expires() -> None:
    secret = issued()
    expiry = NOW + LIFETIMES[VERIFY]
    check_token(STORE[token_hash(secret)], purpose=VERIFY, now=expiry - timedelta(microseconds=1))
    assert refusal(secret, now=expiry) is TokenRefusal.EXPIRED


def test_a_token_mailed_to_an_address_the_account_no_longer_has_is_refused() -> None:
    assert refusal(issued(), address_key="ann@elsewhere.example") is TokenRefusal.ADDRESS_CHANGED


def test_each_refusal_has_its_own_reason_and_words() -> None:
    messages = set()
    for reason in TokenRefusal:
        error = TokenRefused(reason)
        assert error.reason is reason
        messages.add(str(error))
    assert len(messages) == len(TokenRefusal)
