"""The rules of notifications, on plain dataclasses: which event notifies whom of what, how
notifications group (as Mastodon's grouped notifications do), what undoing an action or deleting a
tweet takes away, what a reader is shown (blocks and mutes), and what is unread.

Notifications are made from the event streams, never by a request: a like, a follow, a retweet, a
mention or a reply notifies the account it concerns, and its undoing (an unlike, an unfollow, an
unretweet, the deletion of the tweet) takes the notification away. Events arrive at least once and
in any order, so each is a `Notice` saying whether a notification should exist as of the action
that made it (`source`: the like, follow or tweet id, which only grow); a later source wins over an
earlier one, and a repeat changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from meshkit.ids import time_of
from meshkit.pagination import Page, PageTokens, page_size
from social import Relation, is_hidden

UNREAD_COUNT_MAX = 1000
SAMPLE_ACCOUNTS = 3


# What a notification is about, and how its group is keyed (Mastodon groups likes and reblogs per
# status, follows per time window; mentions and replies stand alone).
class Kind(enum.StrEnum):
    FOLLOW = "follow"
    MENTION = "mention"
    REPLY = "reply"
    LIKE = "like"
    RETWEET = "retweet"


@dataclass(frozen=True, slots=True)
class Key:
    """Which notification: there is at most one per key. `subject_id` is the tweet it is about
    (the one liked or retweeted; the mention or reply itself), 0 for a follow."""

    recipient_id: int
    kind: Kind
    actor_id: int
    subject_id: int = 0


@dataclass(frozen=True, slots=True)
class Notice:
    """That the notification of `key` exists (`on`) or not, as of the action `source` made."""

    key: Key
    source: int
    on: bool

    @property
    def group_key(self) -> str:
        """The group it joins when it appears: one per tweet liked or retweeted, one per UTC day
        for follows (by when the follow was made), none for a mention or a reply."""
        key = self.key
        if key.kind is Kind.FOLLOW:
            return f"follow-{time_of(self.source):%Y%m%d}"
        return f"{key.kind.value}-{key.subject_id}"


@dataclass(frozen=True, slots=True)
class LikeChanged:
    tweet_id: int
    author_id: int
    user_id: int
    like_id: int
    liked: bool


@dataclass(frozen=True, slots=True)
class FollowChanged:
    follower_id: int
    followee_id: int
    follow_id: int
    following: bool


@dataclass(frozen=True, slots=True)
class TweetChanged:
    tweet_id: int
    author_id: int
    deleted: bool = False
    reply_to_author_id: int | None = None
    # Mentioned users and the replied-to author.
    mentioned_user_ids: tuple[int, ...] = ()
    retweet_of_tweet_id: int | None = None
    retweet_of_author_id: int | None = None


def notices_of_like(event: LikeChanged) -> list[Notice]:
    if event.user_id == event.author_id:
        return []
    key = Key(event.author_id, Kind.LIKE, event.user_id, event.tweet_id)
    return [Notice(key, event.like_id, event.liked)]


def notices_of_follow(event: FollowChanged) -> list[Notice]:
    key = Key(event.followee_id, Kind.FOLLOW, event.follower_id)
    return [Notice(key, event.follow_id, event.following)]


def notices_of_tweet(event: TweetChanged) -> list[Notice]:
    """A retweet notifies the original's author; a tweet, those it mentions (a reply, the author it
    answers, as a reply). Nobody is notified of their own doing. A deletion undoes the same."""
    on = not event.deleted
    if event.retweet_of_tweet_id is not None:
        original_author = event.retweet_of_author_id
        if original_author is None or original_author == event.author_id:
            return []
        key = Key(original_author, Kind.RETWEET, event.author_id, event.retweet_of_tweet_id)
        return [Notice(key, event.tweet_id, on)]
    notices = []
    for recipient in dict.fromkeys(event.mentioned_user_ids):
        if recipient == event.author_id:
            continue
        kind = Kind.REPLY if recipient == event.reply_to_author_id else Kind.MENTION
        notices.append(Notice(Key(recipient, kind, event.author_id, event.tweet_id), event.tweet_id, on))
    return notices


@dataclass(frozen=True, slots=True)
class Notification:
    notification_id: int
    recipient_id: int
    kind: Kind
    actor_id: int
    subject_id: int
    group_key: str

    @property
    def create_time(self) -> datetime:
        return time_of(self.notification_id)


@dataclass(frozen=True, slots=True)
class Group:
    """Notifications of one group as a reader sees them: how many, the latest, a few of their
    accounts (the latest to act first)."""

    group_key: str
    kind: Kind
    subject_id: int
    latest_id: int
    count: int
    sample_actor_ids: tuple[int, ...]
    unread: bool = False

    @property
    def latest_time(self) -> datetime:
        return time_of(self.latest_id)


@dataclass(frozen=True, slots=True)
class Published:
    """A change to tell the recipient's live streams: a notification that appeared or went."""

    recipient_id: int
    notification_id: int
    removed: bool


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """A group as stored, and what its hidden accounts took from it (see NotificationStore.groups)."""

    group_key: str
    kind: Kind
    subject_id: int
    latest_id: int
    visible_count: int
    sample_actor_ids: tuple[int, ...] = field(default=())


class NotificationStore(Protocol):
    async def apply(self, notices: Sequence[Notice], gone_tweet_id: int | None) -> list[Published]:
        """Applies the notices of one event in one transaction (and, for a deleted tweet, takes
        away every notification about it and ignores later ones); returns what changed."""
        ...

    async def groups(
        self, recipient_id: int, before: int | None, limit: int, hidden: Sequence[int]
    ) -> list[StoredGroup]:
        """The newest groups (by their latest notification) below `before`, each with how many of
        its notifications are not by `hidden` accounts and the newest SAMPLE_ACCOUNTS of those."""
        ...

    async def read_marker(self, recipient_id: int) -> int: ...
    async def mark_read(self, recipient_id: int, up_to_id: int) -> int:
        """Moves the marker forward to up_to_id (never past the newest notification, never back);
        the marker now."""
        ...

    async def count_after(self, recipient_id: int, after: int, hidden: Sequence[int], limit: int) -> int: ...
    async def by_ids(self, recipient_id: int, ids: Sequence[int]) -> list[Notification]: ...
    async def after(self, recipient_id: int, after: int, limit: int) -> list[Notification]: ...
    async def erase_recipient(self, recipient_id: int) -> None:
        """Every notification of a deleted account, its groups and read marker."""
        ...


class Channels(Protocol):
    """The recipients' live channels (social.live.notification_channel)."""

    async def publish(self, changes: Sequence[Published]) -> None: ...


class RelationSource(Protocol):
    """Every relation of a viewer (social.relations.Relations.all)."""

    async def all(self, viewer: int) -> dict[int, Relation]: ...


def hidden_accounts(relations: Mapping[int, Relation]) -> list[int]:
    """The accounts whose notifications a reader is not shown: those it blocks, is blocked by or
    mutes (social.rules.is_hidden where muting applies)."""
    return sorted(other for other in relations if is_hidden(relations, [other], muting=True))


class Notifications:
    def __init__(
        self,
        store: NotificationStore,
        channels: Channels,
        relations: RelationSource,
        page_tokens: PageTokens,
    ) -> None:
        self._store = store
        self._channels = channels
        self._relations = relations
        self._pages = page_tokens

    async def event(self, notices: Iterable[Notice], gone_tweet_id: int | None = None) -> None:
        """Applies what one event says, then tells the live streams (after the commit: a stream
        that misses it, its feed broken, replays it from the store)."""
        notices = list(notices)
        if not notices and gone_tweet_id is None:
            return
        changes = await self._store.apply(notices, gone_tweet_id)
        if changes:
            await self._channels.publish(changes)

    async def erase_account(self, user_id: int) -> None:
        """A deleted account's part in notifications_svc (social.erasure): its own notifications.
        Those it made for others go with the events of its erasure elsewhere (its follows, likes
        and tweets undone)."""
        await self._store.erase_recipient(user_id)

    async def _hidden(self, viewer: int) -> list[int]:
        return hidden_accounts(await self._relations.all(viewer))

    async def page(self, viewer: int, size: int, token: str) -> Page[Group]:
        """The viewer's notification groups, newest first. Notifications from accounts the viewer
        blocks, mutes or is blocked by are left out of the counts and samples (a group of none
        of anyone else's is left out); a group is unread if its latest is past the read marker."""
        limit = page_size(size)
        scope = f"notifications:{viewer}"
        cursor = self._pages.decode(token, scope)
        hidden = await self._hidden(viewer)
        rows = await self._store.groups(viewer, int(cursor) if cursor else None, limit + 1, hidden)
        page = self._pages.page(rows, limit, scope, lambda row: row.latest_id)
        marker = await self._store.read_marker(viewer)
        shown = [
            Group(
                g.group_key,
                g.kind,
                g.subject_id,
                g.latest_id,
                g.visible_count,
                g.sample_actor_ids,
                unread=g.latest_id > marker,
            )
            for g in page.items
            if g.visible_count > 0
        ]
        return Page(shown, page.next_page_token)

    async def unread_count(self, viewer: int) -> tuple[int, bool]:
        """How many notifications the viewer has not read (not groups), at most UNREAD_COUNT_MAX,
        and whether there are more."""
        marker = await self._store.read_marker(viewer)
        counted = await self._store.count_after(
            viewer, marker, await self._hidden(viewer), UNREAD_COUNT_MAX + 1
        )
        return min(counted, UNREAD_COUNT_MAX), counted > UNREAD_COUNT_MAX

    async def mark_read(self, viewer: int, up_to_id: int) -> int:
        return await self._store.mark_read(viewer, up_to_id)

    async def by_ids(self, recipient_id: int, ids: Sequence[int]) -> list[Notification]:
        return await self._store.by_ids(recipient_id, ids) if ids else []

    async def after(self, recipient_id: int, after: int, limit: int) -> list[Notification]:
        """The notifications after `after`, oldest first (a stream's replay)."""
        return await self._store.after(recipient_id, after, limit)
