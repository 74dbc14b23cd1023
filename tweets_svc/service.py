"""The rules of tweets_svc: what a valid tweet is, idempotent creation, listing, on plain dataclasses."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from meshkit.errors import InvalidArgument, not_found
from meshkit.pagination import Page, PageTokens, page_size

TEXT_MAX = 280
REQUEST_ID_MAX = 64
BATCH_MAX = 1000
AUTHORS_MAX = 5000
_ALLOWED_CONTROLS = {"\n", "\t", "\r"}


@dataclass(frozen=True, slots=True)
class Tweet:
    tweet_id: int
    author_id: int
    text: str
    create_time: datetime
    reply_to_tweet_id: int | None
    reply_count: int


@dataclass(frozen=True, slots=True)
class NewTweet:
    author_id: int
    text: str
    reply_to_tweet_id: int | None
    request_id: str | None


class ReplyTargetMissing(Exception):
    pass


class TweetStore(Protocol):
    async def create(self, new: NewTweet) -> Tweet:
        """Stores the tweet and its event in one transaction; an existing (author, request_id)
        returns the tweet stored the first time. ReplyTargetMissing if the replied-to is gone."""
        ...

    async def by_ids(self, tweet_ids: Sequence[int]) -> dict[int, Tweet]: ...
    async def by_author(self, author_id: int, before: int | None, limit: int) -> list[Tweet]: ...
    async def ids_by_authors(
        self, author_ids: Sequence[int], before: int | None, after: int | None, limit: int
    ) -> list[tuple[int, int]]: ...
    async def tweet_counts(self, author_ids: Sequence[int]) -> dict[int, int]: ...


class UserDirectory(Protocol):
    async def exists(self, user_id: int) -> bool: ...


def normalize_text(text: str) -> str:
    """NFC-normalized text, or INVALID_ARGUMENT on `text` saying what is wrong."""
    normalized = unicodedata.normalize("NFC", text)
    if not normalized.strip():
        raise InvalidArgument.field("text", "must not be empty")
    if len(normalized) > TEXT_MAX:
        raise InvalidArgument.field(
            "text", f"must be at most {TEXT_MAX} characters, got {len(normalized)}", reason="TEXT_TOO_LONG"
        )
    if any(unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS for ch in normalized):
        raise InvalidArgument.field("text", "must not contain control characters")
    if any(unicodedata.category(ch) == "Cs" for ch in normalized):
        raise InvalidArgument.field("text", "must be valid Unicode")
    return normalized


def validate_request_id(request_id: str) -> str | None:
    if request_id == "":
        return None
    if len(request_id) > REQUEST_ID_MAX or not request_id.isprintable():
        raise InvalidArgument.field("request_id", f"must be at most {REQUEST_ID_MAX} printable characters")
    return request_id


class Tweets:
    def __init__(self, store: TweetStore, users: UserDirectory, page_tokens: PageTokens) -> None:
        self._store = store
        self._users = users
        self._pages = page_tokens

    async def create(
        self, author_id: int, text: str, reply_to_tweet_id: int | None, request_id: str
    ) -> Tweet:
        new = NewTweet(author_id, normalize_text(text), reply_to_tweet_id, validate_request_id(request_id))
        try:
            return await self._store.create(new)
        except ReplyTargetMissing:
            raise not_found("tweet", str(reply_to_tweet_id), "reply_to_tweet_id") from None

    async def get(self, tweet_id: int) -> Tweet:
        found = (await self._store.by_ids([tweet_id])).get(tweet_id)
        if found is None:
            raise not_found("tweet", str(tweet_id), "tweet_id")
        return found

    async def batch_get(self, tweet_ids: Sequence[int]) -> list[Tweet]:
        if len(tweet_ids) > BATCH_MAX:
            raise InvalidArgument.field("tweet_ids", f"at most {BATCH_MAX} ids at once")
        found = await self._store.by_ids(tweet_ids)
        return [found[t] for t in dict.fromkeys(tweet_ids) if t in found]

    async def list_by_user(self, user_id: int, size: int, token: str) -> Page[Tweet]:
        limit = page_size(size)
        scope = f"user-tweets:{user_id}"
        cursor = self._pages.decode(token, scope)
        if not await self._users.exists(user_id):
            raise not_found("user", str(user_id), "user_id")
        rows = await self._store.by_author(user_id, int(cursor) if cursor else None, limit + 1)
        return self._pages.page(rows, limit, scope, lambda tweet: tweet.tweet_id)

    async def ids_by_authors(
        self, author_ids: Sequence[int], before: int | None, after: int | None, limit: int
    ) -> list[tuple[int, int]]:
        if len(author_ids) > AUTHORS_MAX:
            raise InvalidArgument.field("author_ids", f"at most {AUTHORS_MAX} authors at once")
        if not 0 < limit <= BATCH_MAX:
            raise InvalidArgument.field("limit", f"must be 1 to {BATCH_MAX}")
        return await self._store.ids_by_authors(author_ids, before, after, limit)

    async def tweet_counts(self, author_ids: Sequence[int]) -> dict[int, int]:
        if len(author_ids) > BATCH_MAX:
            raise InvalidArgument.field("user_ids", f"at most {BATCH_MAX} ids at once")
        return await self._store.tweet_counts(author_ids)
