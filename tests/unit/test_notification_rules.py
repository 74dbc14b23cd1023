"""notifications_svc's rules on in-memory fakes: which event notifies whom of what (and nobody of
their own doing), how notifications group, which accounts a reader is not shown, what a page and
the unread count show, and which stream entries are poison."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from google.protobuf.message import Message

from meshkit.errors import InvalidArgument
from meshkit.ids import id_at
from meshkit.pagination import PageTokens
from meshkit.streams import Entry, PoisonEvent
from meshkit.validation import violations
from notifications_svc.server import follow_changed, like_changed, tweet_changed
from notifications_svc.service import (
    UNREAD_COUNT_MAX,
    FollowChanged,
    Key,
    Kind,
    LikeChanged,
    Notice,
    Notification,
    Notifications,
    Published,
    StoredGroup,
    TweetChanged,
    hidden_accounts,
    notices_of_follow,
    notices_of_like,
    notices_of_tweet,
)
from social import Relation
from tweetmesh.notifications.v1 import notifications_service_pb2 as notifications_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

ANN, BOB, CAT, DAN = 1, 2, 3, 4


def test_a_like_notifies_the_author_unless_it_is_theirs() -> None:
    (notice,) = notices_of_like(LikeChanged(tweet_id=10, author_id=ANN, user_id=BOB, like_id=99, liked=True))
    assert notice == Notice(Key(ANN, Kind.LIKE, BOB, 10), 99, on=True)
    assert notice.group_key == "like-10"
    (undone,) = notices_of_like(LikeChanged(10, ANN, BOB, 100, liked=False))
    assert not undone.on and undone.key == notice.key
    assert notices_of_like(LikeChanged(10, ANN, ANN, 99, liked=True)) == []


def test_follows_group_by_the_utc_day_they_were_made() -> None:
    morning = id_at(datetime(2026, 12, 2, 0, 5, tzinfo=UTC))
    night = id_at(datetime(2026, 12, 2, 23, 55, tzinfo=UTC))
    next_day = id_at(datetime(2026, 12, 3, 0, 1, tzinfo=UTC))
    keys = [
        notices_of_follow(FollowChanged(BOB, ANN, f, True))[0].group_key for f in (morning, night, next_day)
    ]
    assert keys == ["follow-20261202", "follow-20261202", "follow-20261203"]
    (notice,) = notices_of_follow(FollowChanged(BOB, ANN, morning, following=False))
    assert notice.key == Key(ANN, Kind.FOLLOW, BOB, 0) and not notice.on


def test_a_tweet_notifies_whom_it_mentions_and_the_author_it_answers() -> None:
    reply = TweetChanged(
        tweet_id=50, author_id=BOB, reply_to_author_id=ANN, mentioned_user_ids=(ANN, CAT, CAT, BOB)
    )
    assert notices_of_tweet(reply) == [
        Notice(Key(ANN, Kind.REPLY, BOB, 50), 50, on=True),
        Notice(Key(CAT, Kind.MENTION, BOB, 50), 50, on=True),
    ]
    # Each stands alone; its deletion undoes the same notifications.
    assert {n.group_key for n in notices_of_tweet(reply)} == {"reply-50", "mention-50"}
    deleted = TweetChanged(50, BOB, deleted=True, reply_to_author_id=ANN, mentioned_user_ids=(ANN, CAT))
    assert [(n.key, n.on) for n in notices_of_tweet(deleted)] == [
        (Key(ANN, Kind.REPLY, BOB, 50), False),
        (Key(CAT, Kind.MENTION, BOB, 50), False),
    ]
    # A reply to oneself (a thread) notifies nobody.
    assert notices_of_tweet(TweetChanged(51, ANN, reply_to_author_id=ANN, mentioned_user_ids=(ANN,))) == []


def test_a_retweet_notifies_the_original_author_and_groups_by_the_original() -> None:
    retweet = TweetChanged(60, CAT, retweet_of_tweet_id=10, retweet_of_author_id=ANN)
    (notice,) = notices_of_tweet(retweet)
    assert notice == Notice(Key(ANN, Kind.RETWEET, CAT, 10), 60, on=True)
    assert notice.group_key == "retweet-10"
    assert notices_of_tweet(TweetChanged(61, ANN, retweet_of_tweet_id=10, retweet_of_author_id=ANN)) == []
    # An event from before retweets named their original's author: nobody to notify.
    assert notices_of_tweet(TweetChanged(62, CAT, retweet_of_tweet_id=10)) == []


def test_a_reader_is_not_shown_whom_it_blocks_is_blocked_by_or_mutes() -> None:
    relations = {BOB: Relation.BLOCKS, CAT: Relation.BLOCKED_BY, DAN: Relation.MUTES, 5: Relation.NONE}
    assert hidden_accounts(relations) == [BOB, CAT, DAN]


class FakeStore:
    """The reads Notifications makes, over fixed groups and a fixed marker."""

    def __init__(self, stored: list[StoredGroup], marker: int = 0, unread: int = 0) -> None:
        self.stored = stored
        self.marker = marker
        self.unread = unread
        self.hidden_asked: list[Sequence[int]] = []

    async def apply(self, notices: Sequence[Notice], gone_tweet_id: int | None) -> list[Published]:
        return [Published(n.key.recipient_id, n.source, removed=not n.on) for n in notices]

    async def groups(
        self, recipient_id: int, before: int | None, limit: int, hidden: Sequence[int]
    ) -> list[StoredGroup]:
        self.hidden_asked.append(hidden)
        below = [g for g in self.stored if before is None or g.latest_id < before]
        return sorted(below, key=lambda g: -g.latest_id)[:limit]

    async def read_marker(self, recipient_id: int) -> int:
        return self.marker

    async def mark_read(self, recipient_id: int, up_to_id: int) -> int:
        self.marker = max(self.marker, up_to_id)
        return self.marker

    async def count_after(self, recipient_id: int, after: int, hidden: Sequence[int], limit: int) -> int:
        return min(self.unread, limit)

    async def by_ids(self, recipient_id: int, ids: Sequence[int]) -> list[Notification]:
        return []

    async def after(self, recipient_id: int, after: int, limit: int) -> list[Notification]:
        return []

    async def erase_recipient(self, recipient_id: int) -> None:
        self.stored = []


class FakeChannels:
    def __init__(self) -> None:
        self.published: list[Published] = []

    async def publish(self, changes: Sequence[Published]) -> None:
        self.published.extend(changes)


class FixedRelations:
    def __init__(self, relations: dict[int, Relation]) -> None:
        self._relations = relations

    async def all(self, viewer: int) -> dict[int, Relation]:
        return dict(self._relations)


def notifications(store: FakeStore, relations: dict[int, Relation] | None = None) -> Notifications:
    return Notifications(store, FakeChannels(), FixedRelations(relations or {}), PageTokens("s" * 32))


async def test_a_page_leaves_out_groups_of_hidden_accounts_only_and_marks_the_unread() -> None:
    stored = [
        StoredGroup("like-10", Kind.LIKE, 10, latest_id=300, visible_count=41, sample_actor_ids=(BOB, CAT)),
        StoredGroup("mention-20", Kind.MENTION, 20, latest_id=200, visible_count=0),  # all by hidden ones
        StoredGroup(
            "follow-20261202", Kind.FOLLOW, 0, latest_id=100, visible_count=2, sample_actor_ids=(CAT,)
        ),
    ]
    store = FakeStore(stored, marker=150)
    page = await notifications(store, {DAN: Relation.MUTES}).page(ANN, 20, "")
    assert [(g.group_key, g.count, g.unread) for g in page.items] == [
        ("like-10", 41, True),
        ("follow-20261202", 2, False),
    ]
    assert store.hidden_asked == [[DAN]]
    assert page.next_page_token == ""


async def test_pages_go_on_from_the_last_group_and_a_token_only_continues_its_own_list() -> None:
    stored = [StoredGroup(f"like-{i}", Kind.LIKE, i, latest_id=i, visible_count=1) for i in range(1, 6)]
    service = notifications(FakeStore(stored))
    first = await service.page(ANN, 2, "")
    assert [g.latest_id for g in first.items] == [5, 4]
    second = await service.page(ANN, 2, first.next_page_token)
    assert [g.latest_id for g in second.items] == [3, 2]
    with pytest.raises(InvalidArgument):
        await service.page(BOB, 2, first.next_page_token)


async def test_the_unread_count_is_capped() -> None:
    assert await notifications(FakeStore([], unread=7)).unread_count(ANN) == (7, False)
    many = FakeStore([], unread=UNREAD_COUNT_MAX + 50)
    assert await notifications(many).unread_count(ANN) == (UNREAD_COUNT_MAX, True)


async def test_an_event_is_told_to_the_live_streams_after_it_is_stored() -> None:
    channels = FakeChannels()
    service = Notifications(FakeStore([]), channels, FixedRelations({}), PageTokens("s" * 32))
    await service.event(notices_of_like(LikeChanged(10, ANN, BOB, 99, liked=True)))
    await service.event([])  # nothing to do: nothing stored, nothing told
    assert channels.published == [Published(ANN, 99, removed=False)]


def test_the_contract_refuses_oversized_or_malformed_asks() -> None:
    def broken(request: Message) -> list[str]:
        return [v.field for v in violations(request)]

    ids = [str(i) for i in range(1, 1002)]
    assert broken(notifications_pb.BatchGetNotificationsRequest(recipient_id="1", notification_ids=ids)) == [
        "notification_ids"
    ]
    assert (
        broken(notifications_pb.BatchGetNotificationsRequest(recipient_id="1", notification_ids=ids[:1000]))
        == []
    )
    assert broken(notifications_pb.ListNotificationsAfterRequest(recipient_id="1", limit=0)) == ["limit"]
    assert broken(notifications_pb.ListNotificationsAfterRequest(recipient_id="1", limit=1001)) == ["limit"]
    assert broken(
        notifications_pb.ListNotificationsAfterRequest(recipient_id="1", after_id="x", limit=5)
    ) == ["after_id"]
    assert broken(notifications_pb.ListNotificationsAfterRequest(limit=5)) == ["recipient_id"]
    assert broken(notifications_pb.MarkNotificationsReadRequest(up_to_id="")) == ["up_to_id"]
    assert broken(notifications_pb.ListNotificationsRequest(page_size=-1)) == ["page_size"]


def entry(data: bytes | None) -> Entry:
    return Entry(b"1-0", {} if data is None else {b"data": data})


def test_events_become_the_changes_they_announce() -> None:
    like = tweets_pb.LikeEvent(tweet_id="10", user_id="2", author_id="1", like_id="99", liked=True)
    assert like_changed(entry(like.SerializeToString())) == LikeChanged(10, 1, 2, 99, True)
    follow = users_pb.FollowEvent(follower_id="2", followee_id="1", following=True, follow_id="7")
    assert follow_changed(entry(follow.SerializeToString())) == FollowChanged(2, 1, 7, True)
    # A follow event without its id (written before follows carried one) is skipped.
    old = users_pb.FollowEvent(follower_id="2", followee_id="1", following=True)
    assert follow_changed(entry(old.SerializeToString())) is None
    retweet = tweets_pb.TweetEvent(
        tweet_id="60", author_id="3", retweet_of_tweet_id="10", retweet_of_author_id="1"
    )
    assert tweet_changed(entry(retweet.SerializeToString())) == TweetChanged(
        60, 3, retweet_of_tweet_id=10, retweet_of_author_id=1
    )


@pytest.mark.parametrize(
    "data",
    [
        None,  # no payload
        b"\xff\xff\xff",  # not a message
        tweets_pb.LikeEvent(tweet_id="ten", user_id="2", author_id="1", like_id="9").SerializeToString(),
        tweets_pb.LikeEvent(tweet_id="10", author_id="1", like_id="9").SerializeToString(),  # no liker
    ],
)
def test_an_event_that_can_never_be_handled_is_poison(data: bytes | None) -> None:
    with pytest.raises(PoisonEvent):
        like_changed(entry(data))
