"""timeline_svc's gRPC edge: the home timeline page, the home and global live streams and the
notifications stream."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import redis.asyncio as aioredis
from prometheus_client import Histogram

from meshkit import tracing
from meshkit.auth import Authenticator, Session, bearer_token, unexpired
from meshkit.ids import parse_id, time_of
from meshkit.interceptors import Prepared
from meshkit.metrics import REGISTRY
from meshkit.pagination import PageTokens
from meshkit.protos import now_timestamp
from meshkit.ratelimit import Cap, Limit, Policies, Scope, method_name
from meshkit.runtime import Runtime
from social import (
    CelebrityRegistry,
    NotificationsPeer,
    Relations,
    RelationsCache,
    TweetsPeer,
    UsersPeer,
    celebrity_lists,
    home_timelines,
)
from social.caches import CachedTweet, TweetCacheReader, length_delimited
from social.limits import READ_SIGNED_IN
from timeline_svc.fastpath import HomeOpening
from timeline_svc.hydrate import CacheFirst, Coalescer
from timeline_svc.live_hub import LiveHub
from timeline_svc.service import GlobalTimeline, HomeTimeline, NotificationFeed, Visibility
from timeline_svc.settings import TimelineSettings
from timeline_svc.stream import Event, Gap, Heartbeat, TweetArrived, TweetRemoved, TweetUpdated
from tweetmesh.notifications.v1 import notifications_service_pb2 as notifications_pb
from tweetmesh.timeline.v1 import timeline_service_pb2 as pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as pb_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb

Context = grpc.aio.ServicerContext[Any, Any]
# The tags of the fields a response is assembled from (a repeated or oneof message field: tag,
# length, the message's bytes).
_PAGE_TWEET = bytes([pb.GetHomeTimelineResponse.DESCRIPTOR.fields_by_name["tweets"].number << 3 | 2])
_EVENT_TWEET = bytes([pb.StreamHomeTimelineResponse.DESCRIPTOR.fields_by_name["tweet"].number << 3 | 2])
assert _EVENT_TWEET[0] == pb.StreamGlobalTimelineResponse.DESCRIPTOR.fields_by_name["tweet"].number << 3 | 2
_EVENT_UPDATE = bytes([pb.StreamHomeTimelineResponse.DESCRIPTOR.fields_by_name["update"].number << 3 | 2])
assert _EVENT_UPDATE[0] == pb.StreamGlobalTimelineResponse.DESCRIPTOR.fields_by_name["update"].number << 3 | 2
SERVICE = pb.DESCRIPTOR.services_by_name["TimelineService"]
_STREAM_ANYONE = (
    Limit("stream", Scope.ADDRESS, "stream_open_per_address"),
    Cap("stream", Scope.ADDRESS, "streams_per_address"),
    Cap("stream", Scope.PROCESS, "streams_per_process"),
)
# Every public RPC must be here, at the rates of TimelineSettings.rate_limits and the caps of its
# stream_caps (tests/unit/test_rate_limit_policies.py).
RATE_LIMITS: Policies = {
    method_name(SERVICE, "GetHomeTimeline"): READ_SIGNED_IN,
    **{
        method_name(SERVICE, method): (
            Limit("stream", Scope.USER, "stream_open_per_user"),
            Cap("stream", Scope.USER, "streams_per_account"),
            *_STREAM_ANYONE,
        )
        for method in ("StreamHomeTimeline", "StreamNotifications")
    },
    method_name(SERVICE, "StreamGlobalTimeline"): _STREAM_ANYONE,
}

DELIVERY_LATENCY = Histogram(
    "tweetmesh_delivery_latency_seconds",
    "Seconds from a tweet's creation (the time in its id) to a live stream sending it, by stream"
    " (home, global); tweets replayed when a stream opens or resumes are not counted.",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
for _stream in ("home", "global"):
    DELIVERY_LATENCY.labels(_stream)  # served (empty) before the first delivery


class CoalescingTweetsPeer(TweetsPeer):
    """tweets_svc, with concurrent hydrations (all the streams a new tweet wakes) merged."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self._coalesced: Coalescer[int, tweets_pb.Tweet] = Coalescer(super().tweets)

    async def tweets(self, tweet_ids: Sequence[int]) -> dict[int, tweets_pb.Tweet]:
        return await self._coalesced(tweet_ids)


class Tweets:
    """tweets_svc as the timelines see it: its lists as it answers them, its tweets as the caches
    show them (social.caches), asked of it only on a miss."""

    def __init__(self, owner: TweetsPeer, redis: aioredis.Redis) -> None:
        self._owner = owner
        self.refs_by_authors = owner.refs_by_authors
        self.mention_ids = owner.mention_ids
        self._cached = CacheFirst(TweetCacheReader(redis), owner)
        # Every stream a tweet wakes asks for it at once: one read of the caches for all of them.
        self.woken: Coalescer[int, CachedTweet] = Coalescer(self._cached.tweets)

    async def tweets(self, tweet_ids: Sequence[int]) -> dict[int, CachedTweet]:
        return await self._cached.tweets(tweet_ids)

    async def global_page(self, page_token: str, page_size: int) -> tuple[list[CachedTweet], str]:
        tweets, token = await self._owner.global_page(page_token, page_size)
        return [CachedTweet.of(t) for t in tweets], token


def _event(event: Event[CachedTweet], stream: str) -> Prepared | dict[str, Any]:
    """A stream response (the same for the home and global streams): a tweet as its cached bytes;
    a live tweet's time from its creation (the time in its id) to now, when it is sent, goes to
    DELIVERY_LATENCY, and, when its fan-out was traced, the sending is a span of that trace."""
    if isinstance(event, TweetArrived):
        if event.live:
            posted = time_of(event.tweet.tweet_id).timestamp()
            DELIVERY_LATENCY.labels(stream).observe(max(time.time() - posted, 0.0))
            if event.trace is not None:
                attributes = {"tweetmesh.stream": stream, "tweetmesh.tweet_id": str(event.tweet.tweet_id)}
                tracing.delivered("stream send", event.trace, attributes)
        return Prepared(length_delimited(_EVENT_TWEET, event.tweet.data))
    if isinstance(event, TweetUpdated):
        return Prepared(length_delimited(_EVENT_UPDATE, event.tweet.data))
    if isinstance(event, TweetRemoved):
        return {"deletion": pb.TweetDeletion(tweet_id=str(event.tweet_id))}
    if isinstance(event, Gap):
        return {
            "gap": pb.TimelineGap(
                since_tweet_id=str(event.since),
                before_tweet_id=str(event.before),
                page_token=event.page_token,
            )
        }
    assert isinstance(event, Heartbeat)
    return {"heartbeat": pb.Heartbeat(time=now_timestamp())}


class TimelineServicer(pb_grpc.TimelineServiceServicer):
    def __init__(
        self,
        home: HomeTimeline[CachedTweet],
        global_timeline: GlobalTimeline[CachedTweet],
        notifications: NotificationFeed[notifications_pb.Notification],
        auth: Authenticator,
        opening: HomeOpening,
    ) -> None:
        self._home = home
        self._global = global_timeline
        self._notifications = notifications
        self._auth = auth
        self._opening = opening
        self._recheck: Coalescer[str, Session | Exception] = Coalescer(auth.sessions)

    async def _still_signed_in(self, token: str) -> None:
        """A stream's token, checked again at every heartbeat: the stream ends with UNAUTHENTICATED
        within a heartbeat of its logout, password change or expiry. Polling the source of truth
        cannot miss a revocation the way a pub/sub message can. Every stream of the process beats at
        the same moments (LiveStream.follow): their checks are one Redis read, and one question to
        users_svc for the sessions the cache no longer holds."""
        outcome = (await self._recheck([token]))[token]
        if isinstance(outcome, Exception):
            raise outcome

    # Answers prepared bytes (meshkit.interceptors.Prepared), which the generated stubs do not type.
    async def GetHomeTimeline(self, request: pb.GetHomeTimelineRequest, context: Context) -> Prepared:  # type: ignore[override]
        """The page, assembled from the cached bytes of its tweets: the session, timeline and
        celebrity lists in one round trip to Redis, the tweets in a second (timeline_svc.fastpath)."""
        token = bearer_token(context.invocation_metadata())
        opened = await self._opening.read(token)
        if opened.session is None:  # not in the session cache: its owner knows
            viewer, read = (await self._auth.from_owner(token)).user_id, None
        else:
            viewer, read = unexpired(opened.session).user_id, opened
        home = await self._home.page(viewer, request.page_size, request.page_token, read)
        rest = pb.GetHomeTimelineResponse(
            next_page_token=home.page.next_page_token, rebuilding=home.rebuilding
        )
        return Prepared(
            b"".join(length_delimited(_PAGE_TWEET, t.data) for t in home.page.items)
            + rest.SerializeToString()
        )

    async def StreamHomeTimeline(  # type: ignore[override]
        self, request: pb.StreamHomeTimelineRequest, context: Context
    ) -> AsyncIterator[pb.StreamHomeTimelineResponse | Prepared]:
        token = bearer_token(context.invocation_metadata())
        viewer = await self._auth.caller_id(context)
        since = parse_id(request.since_tweet_id, "since_tweet_id", required=False)
        async for event in self._home.stream(viewer, since, functools.partial(self._still_signed_in, token)):
            response = _event(event, "home")
            yield response if isinstance(response, Prepared) else pb.StreamHomeTimelineResponse(**response)

    async def StreamNotifications(
        self, request: pb.StreamNotificationsRequest, context: Context
    ) -> AsyncIterator[pb.StreamNotificationsResponse]:
        token = bearer_token(context.invocation_metadata())
        viewer = await self._auth.caller_id(context)
        since = parse_id(request.since_notification_id, "since_notification_id", required=False)
        at_beat = functools.partial(self._still_signed_in, token)
        async for event in self._notifications.stream(viewer, since, at_beat):
            if isinstance(event, Heartbeat):
                yield pb.StreamNotificationsResponse(heartbeat=pb.Heartbeat(time=now_timestamp()))
            elif isinstance(event, TweetArrived):
                yield pb.StreamNotificationsResponse(notification=event.tweet)
            elif isinstance(event, TweetRemoved):
                removal = pb.NotificationRemoval(notification_id=str(event.tweet_id))
                yield pb.StreamNotificationsResponse(removal=removal)
            # No Gap: the notification replay sends everything after `since`.

    async def StreamGlobalTimeline(  # type: ignore[override]
        self, request: pb.StreamGlobalTimelineRequest, context: Context
    ) -> AsyncIterator[pb.StreamGlobalTimelineResponse | Prepared]:
        since = parse_id(request.since_tweet_id, "since_tweet_id", required=False)
        viewer = await self._auth.viewer(context.invocation_metadata())
        async for event in self._global.stream(since, viewer):
            response = _event(event, "global")
            yield response if isinstance(response, Prepared) else pb.StreamGlobalTimelineResponse(**response)


async def setup(runtime: Runtime[TimelineSettings], server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    redis = await runtime.redis()
    users = UsersPeer(runtime.channel(settings.users_addr, UsersPeer.SERVICE))
    live = LiveHub(redis, confirm_timeout_seconds=settings.rpc_deadline_seconds)
    runtime.probe("live feed", live.check)
    runtime.on_stopping(live.stopping)
    runtime.on_close(live.close)
    tweets = Tweets(CoalescingTweetsPeer(runtime.channel(settings.tweets_addr, TweetsPeer.SERVICE)), redis)
    relations = Relations(RelationsCache(redis), users.relations)
    visibility: Visibility[CachedTweet] = Visibility(relations, lambda tweet: tweet.authors)
    home: HomeTimeline[CachedTweet] = HomeTimeline(
        users,
        tweets,
        home_timelines(redis, settings.home_timeline_max, settings.home_timeline_ttl_seconds),
        live,
        PageTokens(*settings.page_token_secrets),
        original_of=lambda tweet: tweet.retweet_of,
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        celebrity_lists=celebrity_lists(
            redis, settings.home_timeline_max, settings.home_timeline_ttl_seconds
        ),
        registry=CelebrityRegistry(redis),
        live_tweets=tweets.woken,
        visibility=visibility,
    )
    global_timeline: GlobalTimeline[CachedTweet] = GlobalTimeline(
        tweets,
        live,
        id_of=lambda tweet: tweet.tweet_id,
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        replay_max=settings.home_timeline_max,
        live_tweets=tweets.woken,
        visibility=visibility,
    )
    notifications: NotificationFeed[notifications_pb.Notification] = NotificationFeed(
        NotificationsPeer(runtime.channel(settings.notifications_addr, NotificationsPeer.SERVICE)),
        live,
        id_of=lambda notification: int(notification.notification_id),
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        replay_max=settings.home_timeline_max,
        visibility=Visibility(relations, lambda notification: (int(notification.actor.user_id),)),
    )
    auth = Authenticator(redis, users.sessions)
    opening = HomeOpening(redis, settings.home_timeline_ttl_seconds)
    runtime.limit_rates(
        redis, auth, settings.rate_limits, settings.trusted_proxies, caps=settings.stream_caps
    )
    pb_grpc.add_TimelineServiceServicer_to_server(
        TimelineServicer(home, global_timeline, notifications, auth, opening), server
    )
    return [SERVICE.full_name]
