"""timeline_svc's gRPC edge: the home timeline page and the home and global live streams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from prometheus_client import Histogram

from meshkit.auth import Authenticator
from meshkit.ids import parse_id
from meshkit.metrics import REGISTRY
from meshkit.pagination import PageTokens
from meshkit.protos import now_timestamp
from meshkit.ratelimit import Cap, Limit, Policies, Scope, method_name
from meshkit.runtime import Runtime
from social import CelebrityRegistry, TweetsPeer, UsersPeer, celebrity_lists, home_timelines
from social.limits import READ_SIGNED_IN
from timeline_svc.hydrate import Coalescer
from timeline_svc.live_hub import LiveHub
from timeline_svc.service import GlobalTimeline, HomeTimeline
from timeline_svc.settings import TimelineSettings
from timeline_svc.stream import Event, Gap, Heartbeat, TweetArrived, TweetRemoved
from tweetmesh.timeline.v1 import timeline_service_pb2 as pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as pb_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb

Context = grpc.aio.ServicerContext[Any, Any]
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
    method_name(SERVICE, "StreamHomeTimeline"): (
        Limit("stream", Scope.USER, "stream_open_per_user"),
        Cap("stream", Scope.USER, "streams_per_account"),
        *_STREAM_ANYONE,
    ),
    method_name(SERVICE, "StreamGlobalTimeline"): _STREAM_ANYONE,
}

DELIVERY_LATENCY = Histogram(
    "tweetmesh_delivery_latency_seconds",
    "Seconds from a tweet's create_time to a live stream sending it, by stream (home, global);"
    " tweets replayed when a stream opens or resumes are not counted.",
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
        self._coalesced: Coalescer[tweets_pb.Tweet] = Coalescer(super().tweets)

    async def tweets(self, tweet_ids: Sequence[int]) -> dict[int, tweets_pb.Tweet]:
        return await self._coalesced(tweet_ids)


def _original_of(tweet: tweets_pb.Tweet) -> int | None:
    return int(tweet.retweet_of_tweet_id) if tweet.retweet_of_tweet_id else None


def _event(event: Event[tweets_pb.Tweet], stream: str) -> dict[str, Any]:
    """The oneof field of a stream response (the same for the home and global streams); a live
    tweet's time from its post to now, when it is sent, goes to DELIVERY_LATENCY."""
    if isinstance(event, TweetArrived):
        if event.live:
            posted = event.tweet.create_time.ToNanoseconds() / 1e9
            DELIVERY_LATENCY.labels(stream).observe(max(time.time() - posted, 0.0))
        return {"tweet": event.tweet}
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
        home: HomeTimeline[tweets_pb.Tweet],
        global_timeline: GlobalTimeline[tweets_pb.Tweet],
        auth: Authenticator,
    ) -> None:
        self._home = home
        self._global = global_timeline
        self._auth = auth

    async def GetHomeTimeline(
        self, request: pb.GetHomeTimelineRequest, context: Context
    ) -> pb.GetHomeTimelineResponse:
        viewer = await self._auth.user_id(context.invocation_metadata())
        home = await self._home.page(viewer, request.page_size, request.page_token)
        return pb.GetHomeTimelineResponse(
            tweets=home.page.items, next_page_token=home.page.next_page_token, rebuilding=home.rebuilding
        )

    async def StreamHomeTimeline(
        self, request: pb.StreamHomeTimelineRequest, context: Context
    ) -> AsyncIterator[pb.StreamHomeTimelineResponse]:
        metadata = context.invocation_metadata()
        viewer = await self._auth.user_id(metadata)
        since = parse_id(request.since_tweet_id, "since_tweet_id", required=False)
        async for event in self._home.stream(viewer, since):
            if isinstance(event, Heartbeat):
                # The token is checked again at every heartbeat (one Redis read): a stream ends with
                # UNAUTHENTICATED within a heartbeat of its logout, password change or expiry. Polling
                # the source of truth cannot miss a revocation the way a pub/sub message can.
                await self._auth.session(metadata)
            yield pb.StreamHomeTimelineResponse(**_event(event, "home"))

    async def StreamGlobalTimeline(
        self, request: pb.StreamGlobalTimelineRequest, context: Context
    ) -> AsyncIterator[pb.StreamGlobalTimelineResponse]:
        since = parse_id(request.since_tweet_id, "since_tweet_id", required=False)
        async for event in self._global.stream(since):
            yield pb.StreamGlobalTimelineResponse(**_event(event, "global"))


async def setup(runtime: Runtime[TimelineSettings], server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    redis = await runtime.redis()
    users = UsersPeer(runtime.channel(settings.users_addr, UsersPeer.SERVICE))
    live = LiveHub(redis, confirm_timeout_seconds=settings.rpc_deadline_seconds)
    runtime.probe("live feed", live.check)
    runtime.on_stopping(live.stopping)
    runtime.on_close(live.close)
    tweets = CoalescingTweetsPeer(runtime.channel(settings.tweets_addr, TweetsPeer.SERVICE))
    home: HomeTimeline[tweets_pb.Tweet] = HomeTimeline(
        users,
        tweets,
        home_timelines(redis, settings.home_timeline_max, settings.home_timeline_ttl_seconds),
        live,
        PageTokens(*settings.page_token_secrets),
        original_of=_original_of,
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        celebrity_lists=celebrity_lists(
            redis, settings.home_timeline_max, settings.home_timeline_ttl_seconds
        ),
        registry=CelebrityRegistry(redis),
    )
    global_timeline: GlobalTimeline[tweets_pb.Tweet] = GlobalTimeline(
        tweets,
        live,
        id_of=lambda tweet: int(tweet.tweet_id),
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        replay_max=settings.home_timeline_max,
    )
    auth = Authenticator(redis, users.session)
    runtime.limit_rates(
        redis, auth, settings.rate_limits, settings.trusted_proxies, caps=settings.stream_caps
    )
    pb_grpc.add_TimelineServiceServicer_to_server(TimelineServicer(home, global_timeline, auth), server)
    return [SERVICE.full_name]
