"""Notifications through the real mesh: made from the event streams for follows, mentions, replies,
likes and retweets; grouped (200 likes from 200 accounts are one exact group); taken away by an
unlike, an unfollow, an unretweet or a deleted tweet; the unread count and the read marker; the
live stream, and its resume from an id; blocks and mutes; through Envoy."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from devstack.mesh import Mesh
from social import FOLLOWS_STREAM, LIKES_STREAM
from tests.helpers import Account, LiveStream, Stubs, eventually, http_call, redis_client, rpc_error
from tweetmesh.notifications.v1 import notifications_service_pb2 as pb
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

Kind = pb.NotificationKind


def groups(stubs: Stubs, viewer: Account, page_size: int = 100) -> list[pb.NotificationGroup]:
    """Every notification group of the viewer, newest first, following page tokens to the end."""
    found: list[pb.NotificationGroup] = []
    token = ""
    while True:
        page = stubs.notifications.ListNotifications(
            pb.ListNotificationsRequest(page_size=page_size, page_token=token),
            metadata=viewer.auth,
            timeout=10,
        )
        found.extend(page.groups)
        token = page.next_page_token
        if not token:
            return found


def summary(stubs: Stubs, viewer: Account) -> list[tuple[int, int, str]]:
    """(kind, count, tweet id) of each group, in that order (the events of several streams are
    handled concurrently, so groups are newest first by when each was handled, not by when its
    action was made)."""
    return sorted((g.kind, g.notifications_count, g.tweet.tweet_id) for g in groups(stubs, viewer))


def unread(stubs: Stubs, viewer: Account) -> int:
    reply = stubs.notifications.GetUnreadCount(pb.GetUnreadCountRequest(), metadata=viewer.auth, timeout=10)
    return int(reply.count)


def like(stubs: Stubs, who: Account, tweet_id: str, undo: bool = False) -> None:
    if undo:
        stubs.tweets.UnlikeTweet(
            tweets_pb.UnlikeTweetRequest(tweet_id=tweet_id), metadata=who.auth, timeout=10
        )
    else:
        stubs.tweets.LikeTweet(tweets_pb.LikeTweetRequest(tweet_id=tweet_id), metadata=who.auth, timeout=10)


def test_each_kind_notifies_its_account_and_nobody_is_notified_of_their_own_doing(stubs: Stubs) -> None:
    ann, bob = stubs.sign_up("ann"), stubs.sign_up("bob")
    tweet = stubs.post(ann, "ann writes")
    stubs.follow(bob, ann)
    mention = stubs.post(bob, f"hello @{ann.user.handle}")
    reply = stubs.post(bob, f"a reply that also names @{ann.user.handle}", reply_to_tweet_id=tweet.tweet_id)
    like(stubs, bob, tweet.tweet_id)
    stubs.tweets.Retweet(tweets_pb.RetweetRequest(tweet_id=tweet.tweet_id), metadata=bob.auth, timeout=10)
    # Her own doings notify nobody.
    like(stubs, ann, tweet.tweet_id)
    stubs.post(ann, "a thread", reply_to_tweet_id=tweet.tweet_id)
    expected = [
        (Kind.NOTIFICATION_KIND_FOLLOW, 1, ""),
        (Kind.NOTIFICATION_KIND_MENTION, 1, mention.tweet_id),
        (Kind.NOTIFICATION_KIND_REPLY, 1, reply.tweet_id),
        (Kind.NOTIFICATION_KIND_LIKE, 1, tweet.tweet_id),
        (Kind.NOTIFICATION_KIND_RETWEET, 1, tweet.tweet_id),
    ]
    eventually(lambda: summary(stubs, ann) == expected, timeout=20)
    for group in groups(stubs, ann):
        assert [a.user_id for a in group.sample_accounts] == [bob.user_id]
        assert group.unread
    assert groups(stubs, bob) == []
    assert unread(stubs, ann) == 5


def sign_up_and_like(stubs: Stubs, tweet_id: str) -> Account:
    fan = stubs.sign_up("fan")
    like(stubs, fan, tweet_id)
    return fan


def test_a_burst_of_200_likes_from_200_accounts_is_one_exact_group(stubs: Stubs) -> None:
    star = stubs.sign_up("star")
    tweet = stubs.post(star, "like this")
    with ThreadPoolExecutor(max_workers=16) as pool:
        fans = list(pool.map(lambda _: sign_up_and_like(stubs, tweet.tweet_id), range(200)))
    eventually(
        lambda: summary(stubs, star) == [(Kind.NOTIFICATION_KIND_LIKE, 200, tweet.tweet_id)], timeout=60
    )
    (group,) = groups(stubs, star)
    assert group.tweet.like_count == 200
    assert len(group.sample_accounts) == 3
    assert {a.user_id for a in group.sample_accounts} <= {f.user_id for f in fans}
    assert unread(stubs, star) == 200

    # Undone likes leave the group (exactly), and a like again comes back as the newest.
    for fan in fans[:10]:
        like(stubs, fan, tweet.tweet_id, undo=True)
    eventually(
        lambda: summary(stubs, star) == [(Kind.NOTIFICATION_KIND_LIKE, 190, tweet.tweet_id)], timeout=30
    )
    like(stubs, fans[0], tweet.tweet_id)
    eventually(lambda: groups(stubs, star)[0].notifications_count == 191, timeout=30)
    assert groups(stubs, star)[0].sample_accounts[0].user_id == fans[0].user_id
    assert unread(stubs, star) == 191

    # Read up to the latest: nothing unread; the group stays, read.
    latest = groups(stubs, star)[0].latest_notification_id
    marked = stubs.notifications.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(up_to_id=latest), metadata=star.auth, timeout=10
    )
    assert marked.read_up_to_id == latest
    assert unread(stubs, star) == 0 and not groups(stubs, star)[0].unread
    # The marker never moves back, nor past the newest notification.
    stubs.notifications.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(up_to_id="1"), metadata=star.auth
    )
    forward = stubs.notifications.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(up_to_id="9" * 18), metadata=star.auth
    )
    assert forward.read_up_to_id == latest
    like(stubs, fans[1], tweet.tweet_id, undo=True)
    like(stubs, fans[1], tweet.tweet_id)
    eventually(lambda: unread(stubs, star) == 1, timeout=30)


def test_a_redelivered_or_late_event_changes_nothing(stubs: Stubs, mesh: Mesh) -> None:
    """The streams deliver at least once: every event of a like, its unlike, a like again and a
    follow is added to its stream once more, oldest first (a late repeat of each); nothing changes."""
    pam, quin = stubs.sign_up("pam"), stubs.sign_up("quin")
    tweet = stubs.post(pam, "liked, unliked, liked")
    like(stubs, quin, tweet.tweet_id)
    like(stubs, quin, tweet.tweet_id, undo=True)
    like(stubs, quin, tweet.tweet_id)
    stubs.follow(quin, pam)
    expected = [(Kind.NOTIFICATION_KIND_FOLLOW, 1, ""), (Kind.NOTIFICATION_KIND_LIKE, 1, tweet.tweet_id)]
    eventually(lambda: summary(stubs, pam) == expected, timeout=20)
    before = groups(stubs, pam)
    redis = redis_client(mesh.redis_url)
    added: dict[str, list[tuple[int, ...]]] = {}

    def entry_id(raw: Any) -> tuple[int, ...]:
        return tuple(int(part) for part in bytes(raw).split(b"-"))

    for stream, about in ((LIKES_STREAM, tweet.tweet_id), (FOLLOWS_STREAM, quin.user_id)):
        entries: Any = redis.xrange(stream)
        for _, fields in entries:
            if about.encode() in fields[b"data"]:
                added.setdefault(stream, []).append(entry_id(redis.xadd(stream, fields)))
    assert sum(len(ids) for ids in added.values()) == 4

    def handled(stream: str) -> bool:
        groups_of: Any = redis.xinfo_groups(stream)
        (group,) = [g for g in groups_of if g["name"] == b"notifications"]
        return group["pending"] == 0 and entry_id(group["last-delivered-id"]) >= max(added[stream])

    # Once the repeats are handled (read by the group, none pending), nothing moved.
    eventually(lambda: handled(LIKES_STREAM) and handled(FOLLOWS_STREAM), timeout=20)
    assert groups(stubs, pam) == before
    assert unread(stubs, pam) == 2


def test_a_deleted_tweet_takes_its_notifications_away(stubs: Stubs) -> None:
    cat, dan = stubs.sign_up("cat"), stubs.sign_up("dan")
    liked = stubs.post(cat, "soon deleted")
    like(stubs, dan, liked.tweet_id)
    stubs.tweets.Retweet(tweets_pb.RetweetRequest(tweet_id=liked.tweet_id), metadata=dan.auth)
    mention = stubs.post(dan, f"@{cat.user.handle} look, soon deleted too")
    eventually(lambda: len(groups(stubs, cat)) == 3, timeout=20)
    stubs.tweets.DeleteTweet(tweets_pb.DeleteTweetRequest(tweet_id=liked.tweet_id), metadata=cat.auth)
    stubs.tweets.DeleteTweet(tweets_pb.DeleteTweetRequest(tweet_id=mention.tweet_id), metadata=dan.auth)
    eventually(lambda: groups(stubs, cat) == [] and unread(stubs, cat) == 0, timeout=20)


def test_an_unfollow_and_an_unretweet_take_theirs_away_and_follows_group_by_day(stubs: Stubs) -> None:
    eve = stubs.sign_up("eve")
    followers = [stubs.sign_up("follower") for _ in range(3)]
    for follower in followers:
        stubs.follow(follower, eve)
    tweet = stubs.post(eve, "retweet me")
    stubs.tweets.Retweet(tweets_pb.RetweetRequest(tweet_id=tweet.tweet_id), metadata=followers[0].auth)
    eventually(
        lambda: (
            summary(stubs, eve)
            == [(Kind.NOTIFICATION_KIND_FOLLOW, 3, ""), (Kind.NOTIFICATION_KIND_RETWEET, 1, tweet.tweet_id)]
        ),
        timeout=20,
    )
    (follows,) = [g for g in groups(stubs, eve) if g.kind == Kind.NOTIFICATION_KIND_FOLLOW]
    # The newest few, newest first: the follows were made one after the other, on one stream.
    assert [a.user_id for a in follows.sample_accounts] == [f.user_id for f in reversed(followers)]
    stubs.users.UnfollowUser(users_pb.UnfollowUserRequest(user_id=eve.user_id), metadata=followers[2].auth)
    stubs.tweets.Unretweet(tweets_pb.UnretweetRequest(tweet_id=tweet.tweet_id), metadata=followers[0].auth)
    eventually(lambda: summary(stubs, eve) == [(Kind.NOTIFICATION_KIND_FOLLOW, 2, "")], timeout=20)


class NotificationStream(LiveStream):
    """An open StreamNotifications read on a thread; its notifications and removals arrive on a queue."""

    def __init__(self, stubs: Stubs, viewer: Account, since: str = "") -> None:
        request = timeline_pb.StreamNotificationsRequest(since_notification_id=since)
        self._start(stubs.timeline.StreamNotifications(request, metadata=viewer.auth))

    def next(self, kind: str, timeout: float = 15) -> Any:
        """The next event of `kind` ("notification" or "removal") within `timeout` seconds,
        skipping heartbeats (queue.Empty if none comes)."""
        return self._next(kind, timeout)

    def until_quiet(self, quiet: float = 2.0) -> Iterator[Any]:
        """The notifications that come until none has for `quiet` seconds."""
        while True:
            try:
                yield self.next("notification", quiet)
            except queue.Empty:
                return


@pytest.fixture
def streams() -> Iterator[Callable[..., NotificationStream]]:
    opened: list[NotificationStream] = []

    def open_stream(stubs: Stubs, viewer: Account, since: str = "") -> NotificationStream:
        opened.append(NotificationStream(stubs, viewer, since))
        return opened[-1]

    yield open_stream
    for stream in opened:
        stream.close()


def test_the_live_stream_delivers_removes_and_resumes(
    stubs: Stubs, streams: Callable[..., NotificationStream]
) -> None:
    fay, gus = stubs.sign_up("fay"), stubs.sign_up("gus")
    tweet = stubs.post(fay, "watch this")
    live = streams(stubs, fay)
    like(stubs, gus, tweet.tweet_id)
    liked = live.next("notification")
    assert liked.kind == Kind.NOTIFICATION_KIND_LIKE and liked.actor.user_id == gus.user_id
    assert liked.tweet.tweet_id == tweet.tweet_id
    like(stubs, gus, tweet.tweet_id, undo=True)
    assert live.next("removal").notification_id == liked.notification_id

    # What came while no stream was open is replayed from the last id seen, then it goes live.
    stubs.follow(gus, fay)
    followed = live.next("notification")
    live.close()
    # More than one replay page (HOME_TIMELINE_MAX, 30 here): the replay goes on to the end.
    missed = [stubs.post(gus, f"@{fay.user.handle} number {n}") for n in range(35)]
    eventually(lambda: len(groups(stubs, fay)) == 36, timeout=30)
    resumed = streams(stubs, fay, since=followed.notification_id)
    replayed = [n.tweet.tweet_id for n in resumed.until_quiet()]
    assert sorted(replayed) == sorted(t.tweet_id for t in missed)
    stubs.post(gus, f"@{fay.user.handle} live again")
    assert resumed.next("notification").kind == Kind.NOTIFICATION_KIND_MENTION


def test_blocks_and_mutes_apply_to_notifications(
    stubs: Stubs, streams: Callable[..., NotificationStream]
) -> None:
    hal, ivy, jo = stubs.sign_up("hal"), stubs.sign_up("ivy"), stubs.sign_up("jo")
    tweet = stubs.post(hal, "hal posts")
    for fan in (ivy, jo):
        like(stubs, fan, tweet.tweet_id)
    eventually(lambda: summary(stubs, hal) == [(Kind.NOTIFICATION_KIND_LIKE, 2, tweet.tweet_id)], timeout=20)
    stubs.users.MuteUser(users_pb.MuteUserRequest(user_id=ivy.user_id), metadata=hal.auth)
    assert summary(stubs, hal) == [(Kind.NOTIFICATION_KIND_LIKE, 1, tweet.tweet_id)]
    assert [a.user_id for a in groups(stubs, hal)[0].sample_accounts] == [jo.user_id]
    assert unread(stubs, hal) == 1
    live = streams(stubs, hal)
    stubs.post(ivy, f"@{hal.user.handle} muted mention")
    shown = stubs.post(jo, f"@{hal.user.handle} visible mention")
    arrived = [n.tweet.tweet_id for n in live.until_quiet(3)]
    assert arrived == [shown.tweet_id]
    # A block: whoever it is, their notifications go, and the other can no longer make any.
    stubs.users.BlockUser(users_pb.BlockUserRequest(user_id=jo.user_id), metadata=hal.auth)
    assert [g.kind for g in groups(stubs, hal)] == []
    stubs.users.UnmuteUser(users_pb.UnmuteUserRequest(user_id=ivy.user_id), metadata=hal.auth)
    assert sorted((g.kind, g.notifications_count) for g in groups(stubs, hal)) == [
        (Kind.NOTIFICATION_KIND_MENTION, 1),
        (Kind.NOTIFICATION_KIND_LIKE, 1),
    ]


def test_through_envoy_and_without_a_session(stubs: Stubs, mesh: Mesh) -> None:
    kim, lee = stubs.sign_up("kim"), stubs.sign_up("lee")
    stubs.follow(lee, kim)
    port = mesh.ports.envoy
    eventually(
        lambda: (
            http_call(port, "GET", "/v1/notifications:unreadCount", token=kim.token).json()["count"] == "1"
        )
    )
    listed = http_call(port, "GET", "/v1/notifications?page_size=5", token=kim.token).json()
    (group,) = listed["groups"]
    assert group["kind"] == "NOTIFICATION_KIND_FOLLOW" and group["notifications_count"] == "1"
    read = http_call(
        port,
        "POST",
        "/v1/notifications:markRead",
        {"up_to_id": group["latest_notification_id"]},
        token=kim.token,
    )
    assert read.status == 200 and read.json()["read_up_to_id"] == group["latest_notification_id"]
    for path in ("/v1/notifications", "/v1/notifications:unreadCount"):
        assert http_call(port, "GET", path).status == 401
    bad = http_call(port, "POST", "/v1/notifications:markRead", {"up_to_id": "x"}, token=kim.token)
    assert bad.status == 400
    # The internal reads are not reachable from outside.
    outside = Stubs.through(f"127.0.0.1:{port}")
    try:
        error = rpc_error(
            lambda: outside.notifications.BatchGetNotifications(
                pb.BatchGetNotificationsRequest(recipient_id=kim.user_id), timeout=10
            )
        )
    finally:
        outside.close()
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
