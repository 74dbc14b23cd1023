"""timeline_svc's gRPC edge: the home timeline page and the home and global live streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from meshkit.auth import Authenticator
from meshkit.ids import parse_id
from meshkit.pagination import PageTokens
from meshkit.protos import now_timestamp
from meshkit.runtime import Runtime
from social import CelebrityRegistry, TweetsPeer, UsersPeer, celebrity_lists, home_timelines
from timeline_svc.hydrate import Coalescer
from timeline_svc.live_hub import LiveHub
from timeline_svc.service import GlobalTimeline, HomeTimeline
from timeline_svc.settings import TimelineSettings
from timeline_svc.stream import Event, Heartbeat, TweetArrived, TweetRemoved
from tweetmesh.timeline.v1 import timeline_service_pb2 as pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as pb_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb

Context = grpc.aio.ServicerContext[Any, Any]


class CoalescingTweetsPeer(TweetsPeer):
    """tweets_svc, with concurrent hydrations (all the streams a new tweet wakes) merged."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self._coalesced: Coalescer[tweets_pb.Tweet] = Coalescer(super().tweets)

    async def tweets(self, tweet_ids: Sequence[int]) -> dict[int, tweets_pb.Tweet]:
        return await self._coalesced(tweet_ids)


def _original_of(tweet: tweets_pb.Tweet) -> int | None:
    return int(tweet.retweet_of_tweet_id) if tweet.retweet_of_tweet_id else None


def _event(event: Event[tweets_pb.Tweet]) -> dict[str, Any]:
    """The oneof field of a stream response (the same for the home and global streams)."""
    if isinstance(event, TweetArrived):
        return {"tweet": event.tweet}
    if isinstance(event, TweetRemoved):
        return {"deletion": pb.TweetDeletion(tweet_id=str(event.tweet_id))}
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
        viewer = await self._auth.caller_id(context)
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
            yield pb.StreamHomeTimelineResponse(**_event(event))

    async def StreamGlobalTimeline(
        self, request: pb.StreamGlobalTimelineRequest, context: Context
    ) -> AsyncIterator[pb.StreamGlobalTimelineResponse]:
        since = parse_id(request.since_tweet_id, "since_tweet_id", required=False)
        async for event in self._global.stream(since):
            yield pb.StreamGlobalTimelineResponse(**_event(event))


async def setup(runtime: Runtime[TimelineSettings], server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    redis = await runtime.redis()
    users = UsersPeer(runtime.channel(settings.users_addr, UsersPeer.SERVICE))
    live = LiveHub(redis)
    runtime.on_stopping(live.stopping)
    runtime.on_close(live.close)
    tweets = CoalescingTweetsPeer(runtime.channel(settings.tweets_addr, TweetsPeer.SERVICE))
    home: HomeTimeline[tweets_pb.Tweet] = HomeTimeline(
        users,
        tweets,
        home_timelines(redis, settings.home_timeline_max, settings.home_timeline_ttl_seconds),
        live,
        PageTokens(settings.page_token_secret),
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
    pb_grpc.add_TimelineServiceServicer_to_server(TimelineServicer(home, global_timeline, auth), server)
    return [pb.DESCRIPTOR.services_by_name["TimelineService"].full_name]
