"""Live channels: the Redis pub/sub channels on which fan-out announces what changed and
timeline_svc's streams listen, and the format of their messages.

- `live:<user_id>`: a user's home timeline (published only while someone listens);
- `celebrity:<author_id>`: a celebrity's own tweets, merged into their followers' streams;
- `live:global`: the global timeline;
- `notifications:<user_id>`: a user's notifications (written by notifications_svc).

A message is a tweet id in decimal ("123"), a deletion: the id prefixed with "-" ("-123"), or an
edit: the id prefixed with "e" ("e123": the tweet shows differently now), each followed, when
fan-out traced it, by a space and the W3C traceparent of that fan-out (so that the delivery to a
stream joins the post's trace: meshkit.tracing; an edit's is read and dropped). On a
notifications channel it is a notification id, that appeared, or went ("-<id>"). On
a user's channel it may also be a change of the celebrities their timeline merges: "c+<author_id>"
(merged from now on) or "c-<author_id>" (no longer). The timeline store's Lua scripts build the
same channel names (prefix and id) and messages from what social.timelines passes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from meshkit.ids import MAX_ID

USER_CHANNEL_PREFIX = "live:"
CELEBRITY_CHANNEL_PREFIX = "celebrity:"
NOTIFICATION_CHANNEL_PREFIX = "notifications:"
GLOBAL_CHANNEL = f"{USER_CHANNEL_PREFIX}global"


def channel(prefix: str, ident: int) -> str:
    return f"{prefix}{ident}"


def live_channel(user_id: int) -> str:
    return channel(USER_CHANNEL_PREFIX, user_id)


def celebrity_channel(author_id: int) -> str:
    return channel(CELEBRITY_CHANNEL_PREFIX, author_id)


def notification_channel(user_id: int) -> str:
    return channel(NOTIFICATION_CHANNEL_PREFIX, user_id)


def item_message(ident: int, *, removed: bool) -> str:
    """The message that a notification (as a tweet) appeared, or went."""
    return tweet_message(ident, deleted=removed)


def tweet_message(
    tweet_id: int, *, deleted: bool = False, edited: bool = False, trace: str | None = None
) -> str:
    kind = "-" if deleted else "e" if edited else ""
    message = f"{kind}{tweet_id}"
    return message if trace is None else f"{message} {trace}"


def celebrity_message(author_id: int, *, following: bool) -> str:
    return f"c{'+' if following else '-'}{author_id}"


@dataclass(frozen=True, slots=True)
class CelebrityFollow:
    """Told to a user's streams: their timeline now merges (or no longer merges) a celebrity."""

    author_id: int
    following: bool


@dataclass(frozen=True, slots=True)
class TweetEdited:
    """Told to the streams that may show a tweet: its author edited it."""

    tweet_id: int


class LiveTweet(NamedTuple):
    """A tweet delivered to (or deleted from) a timeline, with the trace of its fan-out if traced."""

    tweet_id: int
    deleted: bool
    trace: str | None = None


# What a message says: a tweet, an edit, or a change of the celebrities merged.
LiveMessage = LiveTweet | TweetEdited | CelebrityFollow


_MESSAGE = re.compile(rb"(c[+-]|-|e)?([0-9]{1,19})( 00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})?")


def parse_message(data: bytes) -> LiveMessage:
    """What a message says; ValueError for anything else (readers skip such a message)."""
    match = _MESSAGE.fullmatch(data)
    ident = int(match.group(2)) if match else 0
    if match is None or not 0 < ident <= MAX_ID:
        raise ValueError(f"not a live message: {data[:40]!r}")
    kind, trace = match.group(1) or b"", match.group(3)
    if kind.startswith(b"c"):
        if trace is not None:
            raise ValueError(f"not a live message: {data[:40]!r}")
        return CelebrityFollow(ident, kind == b"c+")
    if kind == b"e":
        return TweetEdited(ident)
    return LiveTweet(ident, kind == b"-", trace[1:].decode() if trace else None)
