"""notifications_svc's gRPC edge (the caller's notification groups, unread count, read marker;
the internal reads timeline_svc's stream makes) and its consumers of the event streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from meshkit.auth import Authenticator
from meshkit.ids import parse_id, require_id
from meshkit.pagination import PageTokens
from meshkit.protos import timestamp, wire_id
from meshkit.ratelimit import Policies, method_name
from meshkit.runtime import Runtime
from meshkit.streams import Entry, StreamConsumer, poison_unless_valid
from notifications_svc.service import (
    FollowChanged,
    Group,
    Kind,
    LikeChanged,
    Notification,
    Notifications,
    TweetChanged,
    notices_of_follow,
    notices_of_like,
    notices_of_tweet,
)
from notifications_svc.settings import NotificationsSettings
from notifications_svc.storage import PostgresNotificationStore, RedisChannels, tidy_forever
from social import (
    ACCOUNTS_STREAM,
    FOLLOWS_STREAM,
    LIKES_STREAM,
    TWEETS_STREAM,
    Relations,
    RelationsCache,
    TweetsPeer,
    UsersPeer,
)
from social.erasure import account_eraser
from social.limits import READ_SIGNED_IN, WRITE
from tweetmesh.notifications.v1 import notifications_service_pb2 as pb
from tweetmesh.notifications.v1 import notifications_service_pb2_grpc as pb_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = pb.DESCRIPTOR.services_by_name["NotificationService"]
GROUP = "notifications"
# Its consumer group on events:accounts (social.erasure): a deleted account's own notifications.
ERASE_GROUP = "notifications-erase"
# Events handled at once per stream (each holds a PostgreSQL connection for its transaction).
CONCURRENCY = 8
# Every public RPC, at the rates of NotificationsSettings.rate_limits: only the caller's own data.
RATE_LIMITS: Policies = {
    method_name(SERVICE, "ListNotifications"): READ_SIGNED_IN,
    method_name(SERVICE, "GetUnreadCount"): READ_SIGNED_IN,
    method_name(SERVICE, "MarkNotificationsRead"): WRITE,
}

KINDS = {
    Kind.FOLLOW: pb.NOTIFICATION_KIND_FOLLOW,
    Kind.MENTION: pb.NOTIFICATION_KIND_MENTION,
    Kind.REPLY: pb.NOTIFICATION_KIND_REPLY,
    Kind.LIKE: pb.NOTIFICATION_KIND_LIKE,
    Kind.RETWEET: pb.NOTIFICATION_KIND_RETWEET,
}


def like_changed(entry: Entry) -> LikeChanged:
    with poison_unless_valid(entry) as data:
        event = tweets_pb.LikeEvent.FromString(data)
        return LikeChanged(
            require_id(event.tweet_id, "tweet_id"),
            require_id(event.author_id, "author_id"),
            require_id(event.user_id, "user_id"),
            require_id(event.like_id, "like_id"),
            event.liked,
        )


def follow_changed(entry: Entry) -> FollowChanged | None:
    """None for an event written before follows carried their id (nothing to order it by)."""
    with poison_unless_valid(entry) as data:
        event = users_pb.FollowEvent.FromString(data)
        if not event.follow_id:
            return None
        return FollowChanged(
            require_id(event.follower_id, "follower_id"),
            require_id(event.followee_id, "followee_id"),
            require_id(event.follow_id, "follow_id"),
            event.following,
        )


def tweet_changed(entry: Entry) -> TweetChanged:
    with poison_unless_valid(entry) as data:
        event = tweets_pb.TweetEvent.FromString(data)
        return TweetChanged(
            require_id(event.tweet_id, "tweet_id"),
            require_id(event.author_id, "author_id"),
            deleted=event.kind == tweets_pb.TweetEvent.KIND_DELETED,
            reply_to_author_id=parse_id(event.reply_to_author_id, "reply_to_author_id", required=False),
            mentioned_user_ids=tuple(require_id(u, "mentioned_user_ids") for u in event.mentioned_user_ids),
            retweet_of_tweet_id=parse_id(event.retweet_of_tweet_id, "retweet_of_tweet_id", required=False),
            retweet_of_author_id=parse_id(event.retweet_of_author_id, "retweet_of_author_id", required=False),
        )


class NotificationServicer(pb_grpc.NotificationServiceServicer):
    def __init__(
        self, notifications: Notifications, users: UsersPeer, tweets: TweetsPeer, auth: Authenticator
    ) -> None:
        self._notifications = notifications
        self._users = users
        self._tweets = tweets
        self._auth = auth

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        viewer = await self._auth.caller_id(context)
        page = await self._notifications.page(viewer, request.page_size, request.page_token)
        return pb.ListNotificationsResponse(
            groups=await self._groups(page.items), next_page_token=page.next_page_token
        )

    async def GetUnreadCount(
        self, request: pb.GetUnreadCountRequest, context: Context
    ) -> pb.GetUnreadCountResponse:
        count, more = await self._notifications.unread_count(await self._auth.caller_id(context))
        return pb.GetUnreadCountResponse(count=count, more=more)

    async def MarkNotificationsRead(
        self, request: pb.MarkNotificationsReadRequest, context: Context
    ) -> pb.MarkNotificationsReadResponse:
        viewer = await self._auth.caller_id(context)
        marker = await self._notifications.mark_read(viewer, require_id(request.up_to_id, "up_to_id"))
        return pb.MarkNotificationsReadResponse(read_up_to_id=wire_id(marker or None))

    async def BatchGetNotifications(
        self, request: pb.BatchGetNotificationsRequest, context: Context
    ) -> pb.BatchGetNotificationsResponse:
        found = await self._notifications.by_ids(
            require_id(request.recipient_id, "recipient_id"),
            [require_id(n, "notification_ids") for n in request.notification_ids],
        )
        return pb.BatchGetNotificationsResponse(notifications=await self._hydrated(found))

    async def ListNotificationsAfter(
        self, request: pb.ListNotificationsAfterRequest, context: Context
    ) -> pb.ListNotificationsAfterResponse:
        found = await self._notifications.after(
            require_id(request.recipient_id, "recipient_id"),
            parse_id(request.after_id, "after_id", required=False) or 0,
            request.limit,
        )
        return pb.ListNotificationsAfterResponse(notifications=await self._hydrated(found))

    async def _people_and_tweets(
        self, user_ids: Sequence[int], tweet_ids: Sequence[int]
    ) -> tuple[dict[int, users_pb.User], dict[int, tweets_pb.Tweet]]:
        users = await self._users.users(list(dict.fromkeys(user_ids)), with_tweet_counts=True)
        tweets = await self._tweets.tweets([t for t in dict.fromkeys(tweet_ids) if t])
        return users, tweets

    async def _hydrated(self, notifications: Sequence[Notification]) -> list[pb.Notification]:
        """The notifications with their accounts and tweets; one whose account or tweet is gone
        (deleted meanwhile) is left out."""
        users, tweets = await self._people_and_tweets(
            [n.actor_id for n in notifications], [n.subject_id for n in notifications]
        )
        return [
            pb.Notification(
                notification_id=str(n.notification_id),
                kind=KINDS[n.kind],
                actor=users[n.actor_id],
                tweet=tweets.get(n.subject_id),
                group_key=n.group_key,
                create_time=timestamp(n.create_time),
            )
            for n in notifications
            if n.actor_id in users and (not n.subject_id or n.subject_id in tweets)
        ]

    async def _groups(self, groups: Sequence[Group]) -> list[pb.NotificationGroup]:
        users, tweets = await self._people_and_tweets(
            [a for g in groups for a in g.sample_actor_ids], [g.subject_id for g in groups]
        )
        return [
            pb.NotificationGroup(
                group_key=g.group_key,
                kind=KINDS[g.kind],
                notifications_count=g.count,
                sample_accounts=[users[a] for a in g.sample_actor_ids if a in users],
                tweet=tweets.get(g.subject_id),
                latest_notification_id=str(g.latest_id),
                latest_time=timestamp(g.latest_time),
                unread=g.unread,
            )
            for g in groups
            if not g.subject_id or g.subject_id in tweets
        ]


async def setup(runtime: Runtime[NotificationsSettings], server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    pool = await runtime.postgres(settings.database_url, "notifications")
    redis = await runtime.redis()
    users = UsersPeer(runtime.channel(settings.users_addr, UsersPeer.SERVICE))
    tweets = TweetsPeer(runtime.channel(settings.tweets_addr, TweetsPeer.SERVICE))
    store = PostgresNotificationStore(pool)
    notifications = Notifications(
        store,
        RedisChannels(redis),
        Relations(RelationsCache(redis), users.relations),
        PageTokens(*settings.page_token_secrets),
    )

    async def on_like(entry: Entry) -> None:
        await notifications.event(notices_of_like(like_changed(entry)))

    async def on_follow(entry: Entry) -> None:
        if (event := follow_changed(entry)) is not None:
            await notifications.event(notices_of_follow(event))

    async def on_tweet(entry: Entry) -> None:
        event = tweet_changed(entry)
        gone = event.tweet_id if event.deleted and event.retweet_of_tweet_id is None else None
        await notifications.event(notices_of_tweet(event), gone)

    for stream, handler in ((LIKES_STREAM, on_like), (FOLLOWS_STREAM, on_follow), (TWEETS_STREAM, on_tweet)):
        consumer = StreamConsumer(
            redis,
            stream,
            GROUP,
            settings.notifications_consumer,
            handler,
            claim_idle_ms=settings.notifications_claim_idle_ms,
            max_deliveries=settings.notifications_max_deliveries,
            forget_idle_ms=settings.consumer_forget_ms,
            batch=CONCURRENCY,
        )
        runtime.background(consumer.run(), f"notify from {stream}")
    eraser = account_eraser(
        redis,
        ERASE_GROUP,
        settings.notifications_consumer,
        notifications.erase_account,
        settings.consumer_forget_ms,
    )
    runtime.background(eraser.run(), f"erase accounts from {ACCOUNTS_STREAM}")
    runtime.background(tidy_forever(store), "notifications-tidy")
    auth = Authenticator(redis, users.sessions)
    runtime.limit_rates(redis, auth, settings.rate_limits, settings.trusted_proxies)
    pb_grpc.add_NotificationServiceServicer_to_server(
        NotificationServicer(notifications, users, tweets, auth), server
    )
    return [SERVICE.full_name]
