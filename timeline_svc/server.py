"""timeline_svc's gRPC edge: the home timeline page and the live stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from meshkit.auth import Authenticator
from meshkit.home_timelines import HomeTimelines
from meshkit.ids import parse_id
from meshkit.pagination import PageTokens
from meshkit.peers import TweetsPeer, UsersPeer
from meshkit.protos import now_timestamp
from meshkit.runtime import Runtime
from timeline_svc.service import Heartbeat, HomeTimeline, TweetArrived
from timeline_svc.storage import LiveHub
from tweetmesh.timeline.v1 import timeline_service_pb2 as pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as pb_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb

Context = grpc.aio.ServicerContext[Any, Any]


class TimelineServicer(pb_grpc.TimelineServiceServicer):
    def __init__(self, home: HomeTimeline[tweets_pb.Tweet], auth: Authenticator) -> None:
        self._home = home
        self._auth = auth

    async def GetHomeTimeline(
        self, request: pb.GetHomeTimelineRequest, context: Context
    ) -> pb.GetHomeTimelineResponse:
        viewer = await self._auth.user_id(context.invocation_metadata())
        page = await self._home.page(viewer, request.page_size, request.page_token)
        return pb.GetHomeTimelineResponse(tweets=page.items, next_page_token=page.next_page_token)

    async def StreamHomeTimeline(
        self, request: pb.StreamHomeTimelineRequest, context: Context
    ) -> AsyncIterator[pb.StreamHomeTimelineResponse]:
        metadata = context.invocation_metadata()
        viewer = await self._auth.user_id(metadata)
        since = parse_id(request.since_tweet_id, "since_tweet_id", required=False)
        async for event in self._home.stream(viewer, since):
            if isinstance(event, TweetArrived):
                yield pb.StreamHomeTimelineResponse(tweet=event.tweet)
            elif isinstance(event, Heartbeat):
                # The token is checked again at every heartbeat (one Redis read): a stream ends with
                # UNAUTHENTICATED within a heartbeat of its logout, password change or expiry. Polling
                # the source of truth cannot miss a revocation the way a pub/sub message can.
                await self._auth.session(metadata)
                yield pb.StreamHomeTimelineResponse(heartbeat=pb.Heartbeat(time=now_timestamp()))


async def setup(runtime: Runtime, server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    redis = await runtime.redis()
    users = UsersPeer(runtime.channel(settings.users_addr))
    live = LiveHub(redis)
    runtime.on_close(live.close)
    home: HomeTimeline[tweets_pb.Tweet] = HomeTimeline(
        users,
        TweetsPeer(runtime.channel(settings.tweets_addr)),
        HomeTimelines(redis, settings.home_timeline_max, settings.home_timeline_ttl_seconds),
        live,
        PageTokens(settings.page_token_secret),
        heartbeat_seconds=settings.stream_heartbeat_seconds,
    )
    auth = Authenticator(redis, users.session)
    runtime.limit_rates(redis, auth)
    pb_grpc.add_TimelineServiceServicer_to_server(TimelineServicer(home, auth), server)
    return [pb.DESCRIPTOR.services_by_name["TimelineService"].full_name]
