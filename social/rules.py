"""Who may see a tweet: the rules every service applies the same way, one function each.

Where SQL must apply a rule too, the fragment stands beside its function under the same name
(tests/integration/test_rules_sql.py runs both on the same rows and holds them together).
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from meshkit.errors import DomainError, FailedPrecondition, PermissionDenied


class Addressed(Protocol):
    """A tweet as far as the rules care: who wrote it and whom it replies to (None: nobody)."""

    @property
    def author_id(self) -> int: ...
    @property
    def reply_to_author_id(self) -> int | None: ...


class Posted(Addressed, Protocol):
    @property
    def retweet_of_tweet_id(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class TweetRef:
    """A tweet by reference: its id and what the rules need to place it."""

    tweet_id: int
    author_id: int
    reply_to_author_id: int | None


def is_for_everyone(tweet: Addressed) -> bool:
    """Whether every follower of the author may see the tweet. A reply to someone else is not for
    everyone (Mastodon's rule): only for those who also follow the replied-to author, and for that
    author. A reply to oneself (a thread) is."""
    return tweet.reply_to_author_id is None or tweet.reply_to_author_id == tweet.author_id


# is_for_everyone on the columns of the tweets table.
IS_FOR_EVERYONE_SQL = "(reply_to_author_id IS NULL OR reply_to_author_id = author_id)"


def is_public(tweet: Posted) -> bool:
    """Whether the tweet is on the global timeline: a tweet for everyone that is not a retweet."""
    return tweet.retweet_of_tweet_id is None and is_for_everyone(tweet)


# is_public on the columns of the tweets table (the partial index tweets_public repeats it).
IS_PUBLIC_SQL = f"retweet_of_id IS NULL AND {IS_FOR_EVERYONE_SQL}"


def belongs_in_home(tweet: Addressed, viewer: int, following: Container[int]) -> bool:
    """Whether a tweet of someone the viewer follows (or of the viewer) is in the viewer's home
    timeline: when it is for everyone, when the viewer wrote it, and when it replies to the viewer
    or to someone else the viewer follows. Tweets mentioning the viewer come in separately."""
    return (
        tweet.author_id == viewer
        or is_for_everyone(tweet)
        or tweet.reply_to_author_id == viewer
        or tweet.reply_to_author_id in following
    )


class Relation(enum.IntFlag):
    """What a viewer has to do with another account (users_svc owns blocks and mutes)."""

    NONE = 0
    BLOCKS = 1  # the viewer blocks the other account
    BLOCKED_BY = 2  # the other account blocks the viewer
    MUTES = 4  # the viewer mutes the other account


BLOCKED_EITHER_WAY = Relation.BLOCKS | Relation.BLOCKED_BY


def is_hidden(relations: Mapping[int, Relation], authors: Iterable[int], *, muting: bool) -> bool:
    """Whether a viewer is not shown something by `authors` (a tweet: its author, and for a
    retweet the original's author too; a user: themself), given the viewer's `relations` with
    them. Never while either blocks the other, on any surface; while the viewer mutes one of them,
    where muting applies (`muting`: the home timeline, its live stream, notifications)."""
    hiding = BLOCKED_EITHER_WAY | Relation.MUTES if muting else BLOCKED_EITHER_WAY
    return any(relations.get(author, Relation.NONE) & hiding for author in authors)


def interaction_refused(relation: Relation, action: str) -> DomainError | None:
    """Why an account may not `action` (follow, reply to, like, retweet...) another given their
    relation, or None when it may: nobody interacts with an account that blocks them, nor with one
    they block (unblock it first). Muting changes nothing."""
    if relation & Relation.BLOCKED_BY:
        return PermissionDenied(f"you cannot {action} an account that blocks you", reason="BLOCKED")
    if relation & Relation.BLOCKS:
        return FailedPrecondition(
            f"you cannot {action} an account you block: unblock it first", reason="YOU_BLOCK"
        )
    return None
