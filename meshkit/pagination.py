"""Page sizes and opaque, tamper-evident page tokens (AIP-158)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshkit.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """The page size to use: 0 means the default, above the maximum is coerced down, negative is refused."""
    if requested < 0:
        raise InvalidArgument.field("page_size", f"must not be negative, got {requested}")
    if requested == 0:
        return default
    return min(requested, maximum)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the token for the next one ("" at the end)."""

    items: list[T]
    next_page_token: str


class PageTokens:
    """Encodes a cursor into a token bound to the request it continues.

    The token carries the cursor and a digest of the request's other arguments (its `scope`), signed
    with a server secret: a client can neither forge a cursor nor reuse a token with other arguments.
    Several secrets rotate a key: tokens are signed with the first and accepted with any, so the
    previous secret can stay listed until the tokens it signed are no longer in use.
    """

    def __init__(self, *secrets: str) -> None:
        if not secrets:
            raise ValueError("PageTokens needs at least one secret")
        self._keys = [hashlib.sha256(secret.encode()).digest() for secret in secrets]

    @staticmethod
    def _mac(key: bytes, body: bytes) -> bytes:
        return hmac.new(key, body, hashlib.sha256).digest()[:12]

    def encode(self, cursor: str, scope: str) -> str:
        body = json.dumps({"c": cursor, "s": hashlib.sha256(scope.encode()).hexdigest()[:16]}).encode()
        return base64.urlsafe_b64encode(body + self._mac(self._keys[0], body)).decode().rstrip("=")

    def page(self, rows: list[T], limit: int, scope: str, cursor_of: Callable[[T], object]) -> Page[T]:
        """The first `limit` of `rows` as a page. Callers fetch `limit + 1` rows: the extra one only
        says that there is a next page, whose token carries the cursor of the last row kept."""
        kept = rows[:limit]
        more = len(rows) > limit
        return Page(kept, self.encode(str(cursor_of(kept[-1])), scope) if more else "")

    def decode(self, token: str, scope: str) -> str | None:
        """The cursor in `token`, None for an empty token, INVALID_ARGUMENT when it is not ours."""
        if token == "":
            return None
        bad = InvalidArgument.field("page_token", "is not a page token this request issued")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise bad from None
        body, mac = raw[:-12], raw[-12:]
        if len(raw) <= 12 or not any(hmac.compare_digest(mac, self._mac(key, body)) for key in self._keys):
            raise bad
        data = json.loads(body)
        if data.get("s") != hashlib.sha256(scope.encode()).hexdigest()[:16]:
            raise InvalidArgument.field("page_token", "was issued for a request with other arguments")
        cursor = data.get("c")
        if not isinstance(cursor, str):
            raise bad
        return cursor
