"""Live channels: the Redis pub/sub channels on which fan-out announces what changed and
timeline_svc's streams listen, and the format of their messages.

- `live:<user_id>`: a user's home timeline (published only while someone listens);
- `celebrity:<author_id>`: a celebrity's own tweets, merged into their followers' streams;
- `live:global`: the global timeline.

A message is a tweet id in decimal ("123"), a deletion: the id prefixed with "-" ("-123"), or an
edit: the id prefixed with "e" ("e123": the tweet shows differently now). On
a user's channel it may also be a change of the celebrities their timeline merges: "c+<author_id>"
(merged from now on) or "c-<author_id>" (no longer). The timeline store's Lua scripts build the
same channel names (prefix and id) and messages from what social.timelines passes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshkit.ids import MAX_ID

USER_CHANNEL_PREFIX = "live:"
CELEBRITY_CHANNEL_PREFIX = "celebrity:"
GLOBAL_CHANNEL = f"{USER_CHANNEL_PREFIX}global"


def channel(prefix: str, ident: int) -> str:
    return f"{prefix}{ident}"


def live_channel(user_id: int) -> str:
    return channel(USER_CHANNEL_PREFIX, user_id)


def celebrity_channel(author_id: int) -> str:
    return channel(CELEBRITY_CHANNEL_PREFIX, author_id)


def tweet_message(tweet_id: int, *, deleted: bool = False, edited: bool = False) -> str:
    if deleted:
        return f"-{tweet_id}"
    return f"e{tweet_id}" if edited else str(tweet_id)


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


# What a message says: (tweet id, deleted), an edit, or a change of the celebrities merged.
LiveMessage = tuple[int, bool] | TweetEdited | CelebrityFollow


_MESSAGE = re.compile(rb"(c[+-]|-|e)?([0-9]{1,19})")


def parse_message(data: bytes) -> LiveMessage:
    """What a message says; ValueError for anything else (readers skip such a message)."""
    match = _MESSAGE.fullmatch(data)
    ident = int(match.group(2)) if match else 0
    if match is None or not 0 < ident <= MAX_ID:
        raise ValueError(f"not a live message: {data[:40]!r}")
    kind = match.group(1) or b""
    if kind.startswith(b"c"):
        return CelebrityFollow(ident, kind == b"c+")
    if kind == b"e":
        return TweetEdited(ident)
    return ident, kind == b"-"
