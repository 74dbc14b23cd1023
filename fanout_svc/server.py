"""fanout_svc's gRPC edge (the admin API) and its event consumers."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from fanout_svc.celebrities import Celebrities
from fanout_svc.service import Fanout, FollowChanged, TweetChanged
from fanout_svc.settings import FanoutSettings
from fanout_svc.stats import TIMELINE_WRITES, FanoutStatsReader, export_stats
from meshkit import metrics
from meshkit.errors import InvalidArgument
from meshkit.ids import parse_id, require_id
from meshkit.pagination import page_size
from meshkit.runtime import Runtime
from meshkit.streams import (
    DeadLetter,
    DeadLetters,
    Entry,
    PoisonEvent,
    StreamConsumer,
    is_entry_id,
    poison_unless_valid,
)
from social import (
    FOLLOWS_STREAM,
    TWEETS_STREAM,
    CelebrityRegistry,
    TweetsPeer,
    UsersPeer,
    celebrity_lists,
    home_timelines,
)
from social.homes import HomeSource
from tweetmesh.fanout.v1 import fanout_service_pb2 as pb
from tweetmesh.fanout.v1 import fanout_service_pb2_grpc as pb_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

Context = grpc.aio.ServicerContext[Any, Any]
GROUP = "fanout"
METRICS_REFRESH_SECONDS = 5.0
# Tweet events written together (one batch of jobs, a few script calls).
TWEETS_BATCH = 64
# Follow events read at once (handled one by one, in order).
FOLLOWS_BATCH = 32


def tweet_changed(entry: Entry) -> TweetChanged:
    with poison_unless_valid(entry) as data:
        event = tweets_pb.TweetEvent.FromString(data)
        return TweetChanged(
            require_id(event.tweet_id, "tweet_id"),
            require_id(event.author_id, "author_id"),
            deleted=event.kind == tweets_pb.TweetEvent.KIND_DELETED,
            reply_to_author_id=parse_id(event.reply_to_author_id, "reply_to_author_id", required=False),
            mentioned_user_ids=tuple(require_id(u, "mentioned_user_ids") for u in event.mentioned_user_ids),
            public=event.public,
            edited=event.kind == tweets_pb.TweetEvent.KIND_EDITED,
            previously_mentioned=tuple(
                require_id(u, "previous_mentioned_user_ids") for u in event.previous_mentioned_user_ids
            ),
            trace=entry.trace,
        )


def follow_changed(entry: Entry) -> FollowChanged:
    with poison_unless_valid(entry) as data:
        event = users_pb.FollowEvent.FromString(data)
        return FollowChanged(
            require_id(event.follower_id, "follower_id"),
            require_id(event.followee_id, "followee_id"),
            event.following,
        )


# The event streams fan-out consumes, and the message each one's entries hold.
EVENTS: dict[str, type[Message]] = {TWEETS_STREAM: tweets_pb.TweetEvent, FOLLOWS_STREAM: users_pb.FollowEvent}


def _event_stream(name: str) -> str:
    if name not in EVENTS:
        raise InvalidArgument.field("stream", f"must be one of {', '.join(EVENTS)}, got {name!r}")
    return name


def _in_words(letter: DeadLetter) -> str:
    """The event as JSON, or "" when it does not decode (a poison event)."""
    try:
        event = EVENTS[letter.stream].FromString(letter.fields.get(b"data", b""))
    except DecodeError:
        return ""
    return json_format.MessageToJson(event, indent=None)


def _page_cursor(token: str, streams: list[str]) -> tuple[int, str | None]:
    """(the index in `streams` of the one to go on with, the dead letter after which) of a page
    token ("<stream>/<dead letter id>"); (0, None) for the first page."""
    if not token:
        return 0, None
    stream, _, after = token.partition("/")
    if stream not in streams or not is_entry_id(after):
        raise InvalidArgument.field("page_token", "is not a page token this request issued")
    return streams.index(stream), after


class FanoutServicer(pb_grpc.FanoutServiceServicer):
    def __init__(self, stats: FanoutStatsReader, dead_letters: DeadLetters) -> None:
        self._stats = stats
        self._dead_letters = dead_letters

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Context
    ) -> pb.ListDeadLettersResponse:
        limit = page_size(request.page_size)
        streams = [_event_stream(request.stream)] if request.stream else list(EVENTS)
        first, after = _page_cursor(request.page_token, streams)
        letters: list[DeadLetter] = []
        for stream in streams[first:]:
            letters += await self._dead_letters.read(stream, after, limit + 1 - len(letters))
            after = None
            if len(letters) > limit:
                break
        token = (
            f"{letters[limit - 1].stream}/{letters[limit - 1].dead_letter_id}" if len(letters) > limit else ""
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[
                pb.DeadLetter(
                    stream=letter.stream,
                    dead_letter_id=letter.dead_letter_id,
                    entry_id=letter.entry_id,
                    reason=letter.reason,
                    data=letter.fields.get(b"data", b""),
                    event=_in_words(letter),
                )
                for letter in letters[:limit]
            ],
            next_page_token=token,
        )

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Context
    ) -> pb.ReplayDeadLettersResponse:
        stream = _event_stream(request.stream)
        if request.all == bool(request.dead_letter_ids):
            raise InvalidArgument.field("dead_letter_ids", "give the ids to replay, or all = true (not both)")
        bad = [i for i in request.dead_letter_ids if not is_entry_id(i)]
        if bad:
            raise InvalidArgument.field("dead_letter_ids", f"not dead-letter ids: {', '.join(bad[:5])}")
        if request.all:
            replayed = await self._dead_letters.replay_all(stream)
        else:
            replayed = await self._dead_letters.replay(stream, list(request.dead_letter_ids))
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def GetFanoutStats(
        self, request: pb.GetFanoutStatsRequest, context: Context
    ) -> pb.GetFanoutStatsResponse:
        stats = await self._stats.stats()
        return pb.GetFanoutStatsResponse(
            streams=[
                pb.StreamStats(
                    stream=s.stream, length=s.length, pending=s.pending, lag=s.lag, consumers=s.consumers
                )
                for s in stats.streams
            ],
            delivered=stats.delivered,
            dead_lettered=stats.dead_lettered,
        )


async def setup(runtime: Runtime[FanoutSettings], server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    redis = await runtime.redis()
    users = UsersPeer(runtime.channel(settings.users_addr, UsersPeer.SERVICE))
    tweets = TweetsPeer(runtime.channel(settings.tweets_addr, TweetsPeer.SERVICE))
    home = home_timelines(redis, settings.home_timeline_max, settings.home_timeline_ttl_seconds)
    registry = CelebrityRegistry(redis)
    fanout = Fanout(
        users,
        users,
        home,
        HomeSource(users, tweets, home, registry),
        Celebrities(registry, users, home, tweets, settings.celebrity_followers),
        celebrity_lists(redis, settings.home_timeline_max, settings.home_timeline_ttl_seconds),
        call_budget=settings.fanout_call_budget,
    )

    async def on_tweets(entries: list[Entry]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(entries)
        events, at = [], []
        for n, entry in enumerate(entries):
            try:
                events.append(tweet_changed(entry))
                at.append(n)
            except PoisonEvent as poison:
                outcomes[n] = poison
        for n, result in zip(at, await fanout.tweets_changed(events), strict=True):
            if isinstance(result, Exception):
                outcomes[n] = result
            else:
                TIMELINE_WRITES.inc(result)
        return outcomes

    async def on_follow(entry: Entry) -> None:
        await fanout.follow_changed(follow_changed(entry))

    # Tweets are written a batch at a time; a follow and the unfollow after it apply in that order.
    consumers = (
        StreamConsumer(
            redis,
            TWEETS_STREAM,
            GROUP,
            settings.fanout_consumer,
            batch_handler=on_tweets,
            claim_idle_ms=settings.fanout_claim_idle_ms,
            max_deliveries=settings.fanout_max_deliveries,
            batch=TWEETS_BATCH,
        ),
        StreamConsumer(
            redis,
            FOLLOWS_STREAM,
            GROUP,
            settings.fanout_consumer,
            on_follow,
            claim_idle_ms=settings.fanout_claim_idle_ms,
            max_deliveries=settings.fanout_max_deliveries,
            ordered=True,
            batch=FOLLOWS_BATCH,
        ),
    )
    for stream, consumer in zip((TWEETS_STREAM, FOLLOWS_STREAM), consumers, strict=True):
        runtime.background(consumer.run(), f"consume {stream}")
    dead_letters = DeadLetters(redis, list(EVENTS))
    stats = FanoutStatsReader(redis, list(EVENTS), GROUP, dead_letters)
    if settings.metrics_port:
        runtime.background(
            metrics.refresh_every(METRICS_REFRESH_SECONDS, lambda: export_stats(stats), "fanout stats"),
            "fanout metrics",
        )
    pb_grpc.add_FanoutServiceServicer_to_server(FanoutServicer(stats, dead_letters), server)
    return [pb.DESCRIPTOR.services_by_name["FanoutService"].full_name]
