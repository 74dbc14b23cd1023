"""tweets_svc's gRPC edge: requests to domain calls, tweets hydrated with their authors."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError

from meshkit.auth import Authenticator
from meshkit.batching import GroupCommit
from meshkit.errors import InvalidArgument
from meshkit.ids import parse_id, require_id
from meshkit.outbox import Event, OnRelay, Outbox
from meshkit.pagination import PageTokens
from meshkit.protos import now_timestamp, timestamp, wire_id
from meshkit.ratelimit import Policies, method_name
from meshkit.runtime import Runtime
from meshkit.streams import Entry, PoisonEvent, StreamConsumer
from social import ACCOUNTS_STREAM, TWEETS_STREAM, MediaPeer, Relations, RelationsCache, UsersPeer
from social.caches import OwnerCache, UserCacheReader
from social.erasure import account_eraser
from social.limits import READ, READ_SIGNED_IN, WRITE
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as pb_grpc
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweets_svc.service import EditLimits, LikeChange, ThreadNode, Tweet, TweetChange, TweetMedia, Tweets
from tweets_svc.settings import TweetsSettings
from tweets_svc.storage import PostgresTweetStore, TweetCache
from tweets_svc.trends import TRENDS_MAX, TrendCounter

Context = grpc.aio.ServicerContext[Any, Any]
# tweets_svc's consumer group on its own tweets' events: it counts their hashtags for trends.
TRENDS_GROUP = "trends"
# Concurrent calls whose users are read from the cache in one read, at most.
USER_READS_TOGETHER = 256
# Trends count by the minute: their tweet events are read a batch at a time, at most this often.
TRENDS_READ_EVERY_MS = 200
# tweets_svc's consumer group on events:accounts (social.erasure): a deleted account's tweets,
# likes and bookmarks.
ERASE_GROUP = "tweets-erase"
SERVICE = pb.DESCRIPTOR.services_by_name["TweetService"]
# Every public RPC (one with an HTTP route through Envoy) must be here, at the rates of
# TweetsSettings.rate_limits; tests/unit/test_rate_limit_policies.py reads the descriptors and fails
# when one is missing.
RATE_LIMITS: Policies = {
    **{
        method_name(SERVICE, method): WRITE
        for method in (
            "CreateTweet",
            "EditTweet",
            "DeleteTweet",
            "LikeTweet",
            "UnlikeTweet",
            "Retweet",
            "Unretweet",
            "BookmarkTweet",
            "UnbookmarkTweet",
        )
    },
    **{
        method_name(SERVICE, method): READ
        for method in (
            "GetTweet",
            "GetTweetHistory",
            "ListUserTweets",
            "ListReplies",
            "ListQuotes",
            "GetConversation",
            "ListLikingUsers",
            "ListLikedTweets",
            "ListMentions",
            "ListHashtagTweets",
            "SearchTweets",
            "GetGlobalTimeline",
            "GetTrends",
        )
    },
    # A read that needs a token is counted per user too.
    method_name(SERVICE, "ListBookmarks"): READ_SIGNED_IN,
}


def _kind(change: TweetChange) -> pb.TweetEvent.Kind:
    if change.deleted:
        return pb.TweetEvent.KIND_DELETED
    return pb.TweetEvent.KIND_EDITED if change.edited else pb.TweetEvent.KIND_CREATED


def tweet_event(change: TweetChange) -> bytes:
    tweet = change.tweet
    return pb.TweetEvent(
        tweet_id=str(tweet.tweet_id),
        author_id=str(tweet.author_id),
        create_time=timestamp(tweet.create_time),
        reply_to_tweet_id=wire_id(tweet.reply_to_tweet_id),
        kind=_kind(change),
        reply_to_author_id=wire_id(tweet.reply_to_author_id),
        retweet_of_tweet_id=wire_id(tweet.retweet_of_tweet_id),
        mentioned_user_ids=[str(u) for u in change.mentioned_user_ids],
        public=tweet.public,
        media_ids=[str(m) for m in change.media_ids],
        quote_tweet_id=wire_id(tweet.quote_of_tweet_id),
        hashtags=tweet.hashtags,
        previous_hashtags=change.previous_hashtags,
        previous_mentioned_user_ids=[str(u) for u in change.previous_mentioned_user_ids],
        retweet_of_author_id="" if tweet.retweeted is None else str(tweet.retweeted.author_id),
    ).SerializeToString()


def like_event(change: LikeChange) -> bytes:
    return pb.LikeEvent(
        tweet_id=str(change.tweet_id),
        user_id=str(change.user_id),
        author_id=str(change.author_id),
        like_id=str(change.like_id),
        liked=change.liked,
        event_time=now_timestamp(),
    ).SerializeToString()


def own_fields(tweet: Tweet) -> pb.Tweet:
    """A tweet's own fields, counts included: all but its author and original (what the cache keeps)."""
    return pb.Tweet(
        tweet_id=str(tweet.tweet_id),
        author_id=str(tweet.author_id),
        text=tweet.text,
        create_time=timestamp(tweet.create_time),
        reply_to_tweet_id=wire_id(tweet.reply_to_tweet_id),
        reply_count=tweet.reply_count,
        reply_to_author_id=wire_id(tweet.reply_to_author_id),
        reply_to_deleted=tweet.reply_to_deleted,
        retweet_of_tweet_id=wire_id(tweet.retweet_of_tweet_id),
        like_count=tweet.like_count,
        retweet_count=tweet.retweet_count,
        mentions=[pb.Mention(user_id=str(m.user_id), handle=m.handle) for m in tweet.mentions],
        hashtags=tweet.hashtags,
        media=[wire_media(m) for m in tweet.media],
        quote_tweet_id=wire_id(tweet.quote_of_tweet_id),
        quote_count=tweet.quote_count,
        edit_time=timestamp(tweet.edit_time) if tweet.edit_time is not None else None,
        edit_count=tweet.edit_count,
    )


def deletion_entries(cache: TweetCache) -> OnRelay:
    """What relaying a tweet event does to the cache, by the request or the sweeper: a deleted
    tweet's entry says so for good (a lost relay cannot leave it showing)."""

    async def on_relay(pipe: Any, event: Event) -> None:
        if event.stream == TWEETS_STREAM:
            change = pb.TweetEvent.FromString(event.payload)
            if change.kind == pb.TweetEvent.KIND_DELETED:
                await cache.put_in(pipe, cache.deletion(int(change.tweet_id)))

    return on_relay


def wire_media(media: TweetMedia) -> pb.TweetMedia:
    duration = Duration()
    duration.FromMilliseconds(media.duration_ms)
    return pb.TweetMedia(
        media_id=str(media.media_id),
        content_type=media.content_type,
        width=media.width,
        height=media.height,
        duration=duration,
        url=media.url,
        thumbnail_url=media.thumbnail_url,
        alt_text=media.alt_text,
    )


class TweetServicer(pb_grpc.TweetServiceServicer):
    def __init__(
        self,
        tweets: Tweets,
        users: UsersPeer,
        user_cache: UserCacheReader,
        auth: Authenticator,
        trends: TrendCounter,
    ) -> None:
        self._tweets = tweets
        self._users = users
        self._user_cache = user_cache
        self._auth = auth
        self._trends = trends
        # The cache reads of concurrent calls (each post's answer shows its author) go together:
        # one at a time, those that come meanwhile share the next.
        self._user_reads: GroupCommit[tuple[int, ...], dict[int, bytes]] = GroupCommit(
            "user cache reads", self._read_users, max_batch=USER_READS_TOGETHER, max_in_flight=1
        )

    async def _read_users(self, reads: Sequence[tuple[int, ...]]) -> list[dict[int, bytes]]:
        found = await self._user_cache.read([u for read in reads for u in read])
        return [{u: found[u] for u in read if u in found} for read in reads]

    async def users(
        self, user_ids: Sequence[int], known: Mapping[int, int] | None = None
    ) -> dict[int, users_pb.User]:
        """Users with their tweet counts, which live here (so users_svc is asked without them);
        `known` holds counts already read (with the tweets being hydrated), the rest are asked.
        The users come from users_svc's cache; users_svc is asked for those it misses."""
        cached = await self._user_reads(tuple(user_ids)) if user_ids else {}
        found = {u: users_pb.User.FromString(data) for u, data in cached.items()}
        if missing := [u for u in user_ids if u not in found]:
            found.update(await self._users.users(missing, with_tweet_counts=False))
        counts = dict(known or {})
        if missing := [u for u in found if u not in counts]:
            counts.update(await self._tweets.tweet_counts(missing))
        for user_id, user in found.items():
            user.tweets_count = counts.get(user_id, 0)
        return found

    async def hydrate(self, tweets: Sequence[Tweet]) -> list[pb.Tweet]:
        """Wire tweets with their authors, retweets with their original and its author, quotes with
        the tweet they quote and its author."""
        originals = [t.retweeted for t in tweets if t.retweeted is not None]
        quoted = [t.quoted for t in (*tweets, *originals) if t.quoted is not None]
        shown = (*tweets, *originals, *quoted)
        counts = {t.author_id: t.author_tweets_count for t in shown if t.author_tweets_count is not None}
        authors = await self.users(list({t.author_id for t in shown}), counts)

        def quote(tweet: Tweet) -> tuple[pb.Tweet | None, pb.QuoteStatus]:
            """The quoted tweet to show, and what can be shown of it."""
            if tweet.quoted is not None:
                if tweet.quoted.author_id not in authors:  # the account is gone
                    return None, pb.QUOTE_STATUS_UNAVAILABLE
                return wire(tweet.quoted), pb.QUOTE_STATUS_AVAILABLE
            if tweet.quoted_deleted:
                return None, pb.QUOTE_STATUS_DELETED
            return None, pb.QUOTE_STATUS_UNSPECIFIED

        def wire(tweet: Tweet) -> pb.Tweet:
            quoted_tweet, quote_status = quote(tweet)
            message = own_fields(tweet)
            if (author := authors.get(tweet.author_id)) is not None:
                message.author.CopyFrom(author)
            if tweet.retweeted is not None:
                message.retweeted_tweet.CopyFrom(wire(tweet.retweeted))
            if quoted_tweet is not None:
                message.quoted_tweet.CopyFrom(quoted_tweet)
            message.quote_status = quote_status
            return message

        return [wire(t) for t in tweets]

    async def _viewer(self, context: Context) -> int | None:
        """The caller of a read, if signed in: what it may see depends on its blocks."""
        return await self._auth.viewer(context.invocation_metadata())

    async def CreateTweet(self, request: pb.CreateTweetRequest, context: Context) -> pb.CreateTweetResponse:
        author_id = await self._auth.caller_id(context)
        reply_to = parse_id(request.reply_to_tweet_id, "reply_to_tweet_id", required=False)
        tweet = await self._tweets.create(
            author_id,
            request.text,
            reply_to,
            request.request_id,
            [require_id(m, "media_ids") for m in request.media_ids],
            {require_id(m, "alt_texts"): text for m, text in request.alt_texts.items()},
            parse_id(request.quote_tweet_id, "quote_tweet_id", required=False),
        )
        (wire,) = await self.hydrate([tweet])
        return pb.CreateTweetResponse(tweet=wire)

    async def EditTweet(self, request: pb.EditTweetRequest, context: Context) -> pb.EditTweetResponse:
        tweet = await self._tweets.edit(
            await self._auth.caller_id(context),
            require_id(request.tweet_id, "tweet_id"),
            request.text,
            [require_id(m, "media_ids") for m in request.media_ids],
            {require_id(m, "alt_texts"): text for m, text in request.alt_texts.items()},
            request.clear_media,
            request.request_id,
        )
        (wire,) = await self.hydrate([tweet])
        return pb.EditTweetResponse(tweet=wire)

    async def GetTweetHistory(
        self, request: pb.GetTweetHistoryRequest, context: Context
    ) -> pb.GetTweetHistoryResponse:
        versions = await self._tweets.history(require_id(request.tweet_id, "tweet_id"))
        return pb.GetTweetHistoryResponse(
            versions=[
                pb.TweetVersion(text=v.text, media=[wire_media(m) for m in v.media], time=timestamp(v.time))
                for v in versions
            ]
        )

    async def GetTweet(self, request: pb.GetTweetRequest, context: Context) -> pb.GetTweetResponse:
        tweet = await self._tweets.get(require_id(request.tweet_id, "tweet_id"), await self._viewer(context))
        (wire,) = await self.hydrate([tweet])
        return pb.GetTweetResponse(tweet=wire)

    async def ListUserTweets(
        self, request: pb.ListUserTweetsRequest, context: Context
    ) -> pb.ListUserTweetsResponse:
        page = await self._tweets.list_by_user(
            require_id(request.user_id, "user_id"),
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        return pb.ListUserTweetsResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def DeleteTweet(self, request: pb.DeleteTweetRequest, context: Context) -> pb.DeleteTweetResponse:
        await self._tweets.delete(
            await self._auth.caller_id(context), require_id(request.tweet_id, "tweet_id")
        )
        return pb.DeleteTweetResponse()

    async def ListQuotes(self, request: pb.ListQuotesRequest, context: Context) -> pb.ListQuotesResponse:
        page = await self._tweets.quotes(
            require_id(request.tweet_id, "tweet_id"),
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        return pb.ListQuotesResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def GetConversation(
        self, request: pb.GetConversationRequest, context: Context
    ) -> pb.GetConversationResponse:
        found = await self._tweets.conversation(
            require_id(request.tweet_id, "tweet_id"),
            request.max_depth,
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        placed = [*found.ancestors, found.tweet, *found.replies.items]
        wired = iter(await self.hydrate([t for _, t in placed if t is not None]))

        def entry(node: ThreadNode, tweet: Tweet | None) -> pb.ConversationEntry:
            return pb.ConversationEntry(
                tweet_id=str(node.tweet_id),
                parent_tweet_id=wire_id(node.parent_id),
                depth=node.depth,
                deleted=tweet is None,
                tweet=next(wired) if tweet is not None else None,
            )

        entries = [entry(*p) for p in placed]
        ancestors = len(found.ancestors)
        return pb.GetConversationResponse(
            ancestors=entries[:ancestors],
            tweet=entries[ancestors],
            replies=entries[ancestors + 1 :],
            next_page_token=found.replies.next_page_token,
        )

    async def ListReplies(self, request: pb.ListRepliesRequest, context: Context) -> pb.ListRepliesResponse:
        page = await self._tweets.replies(
            require_id(request.tweet_id, "tweet_id"),
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        return pb.ListRepliesResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def Retweet(self, request: pb.RetweetRequest, context: Context) -> pb.RetweetResponse:
        tweet = await self._tweets.retweet(
            await self._auth.caller_id(context), require_id(request.tweet_id, "tweet_id")
        )
        (wire,) = await self.hydrate([tweet])
        return pb.RetweetResponse(tweet=wire)

    async def Unretweet(self, request: pb.UnretweetRequest, context: Context) -> pb.UnretweetResponse:
        tweet = await self._tweets.unretweet(
            await self._auth.caller_id(context), require_id(request.tweet_id, "tweet_id")
        )
        (wire,) = await self.hydrate([tweet])
        return pb.UnretweetResponse(tweet=wire)

    async def LikeTweet(self, request: pb.LikeTweetRequest, context: Context) -> pb.LikeTweetResponse:
        tweet = await self._tweets.like(
            await self._auth.caller_id(context), require_id(request.tweet_id, "tweet_id")
        )
        (wire,) = await self.hydrate([tweet])
        return pb.LikeTweetResponse(tweet=wire)

    async def UnlikeTweet(self, request: pb.UnlikeTweetRequest, context: Context) -> pb.UnlikeTweetResponse:
        tweet = await self._tweets.unlike(
            await self._auth.caller_id(context), require_id(request.tweet_id, "tweet_id")
        )
        (wire,) = await self.hydrate([tweet])
        return pb.UnlikeTweetResponse(tweet=wire)

    async def GetTrends(self, request: pb.GetTrendsRequest, context: Context) -> pb.GetTrendsResponse:
        window = request.window or "1h"
        if request.limit < 0:
            raise InvalidArgument.field("limit", f"must not be negative, got {request.limit}")
        found = await self._trends.ranking(window, time.time(), min(request.limit or 10, TRENDS_MAX))
        return pb.GetTrendsResponse(
            trends=[pb.Trend(tag=t.tag, count=t.count, expected=t.expected, score=t.score) for t in found],
            window=window,
        )

    async def BookmarkTweet(
        self, request: pb.BookmarkTweetRequest, context: Context
    ) -> pb.BookmarkTweetResponse:
        await self._tweets.bookmark(
            await self._auth.caller_id(context), require_id(request.tweet_id, "tweet_id")
        )
        return pb.BookmarkTweetResponse()

    async def UnbookmarkTweet(
        self, request: pb.UnbookmarkTweetRequest, context: Context
    ) -> pb.UnbookmarkTweetResponse:
        await self._tweets.unbookmark(
            await self._auth.caller_id(context), require_id(request.tweet_id, "tweet_id")
        )
        return pb.UnbookmarkTweetResponse()

    async def ListBookmarks(
        self, request: pb.ListBookmarksRequest, context: Context
    ) -> pb.ListBookmarksResponse:
        page = await self._tweets.bookmarks(
            await self._auth.caller_id(context), request.page_size, request.page_token
        )
        return pb.ListBookmarksResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def ListLikingUsers(
        self, request: pb.ListLikingUsersRequest, context: Context
    ) -> pb.ListLikingUsersResponse:
        page = await self._tweets.liking_users(
            require_id(request.tweet_id, "tweet_id"),
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        found = await self.users(page.items)
        return pb.ListLikingUsersResponse(
            users=[found[u] for u in page.items if u in found], next_page_token=page.next_page_token
        )

    async def ListLikedTweets(
        self, request: pb.ListLikedTweetsRequest, context: Context
    ) -> pb.ListLikedTweetsResponse:
        page = await self._tweets.liked(
            require_id(request.user_id, "user_id"),
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        return pb.ListLikedTweetsResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def ListMentions(
        self, request: pb.ListMentionsRequest, context: Context
    ) -> pb.ListMentionsResponse:
        page = await self._tweets.mentions(
            require_id(request.user_id, "user_id"),
            request.page_size,
            request.page_token,
            await self._viewer(context),
        )
        return pb.ListMentionsResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def ListHashtagTweets(
        self, request: pb.ListHashtagTweetsRequest, context: Context
    ) -> pb.ListHashtagTweetsResponse:
        page = await self._tweets.hashtag(
            request.tag, request.page_size, request.page_token, await self._viewer(context)
        )
        return pb.ListHashtagTweetsResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def SearchTweets(
        self, request: pb.SearchTweetsRequest, context: Context
    ) -> pb.SearchTweetsResponse:
        page = await self._tweets.search(
            request.query, request.page_size, request.page_token, await self._viewer(context)
        )
        return pb.SearchTweetsResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def GetGlobalTimeline(
        self, request: pb.GetGlobalTimelineRequest, context: Context
    ) -> pb.GetGlobalTimelineResponse:
        page = await self._tweets.global_timeline(
            request.page_size, request.page_token, await self._viewer(context)
        )
        return pb.GetGlobalTimelineResponse(
            tweets=await self.hydrate(page.items), next_page_token=page.next_page_token
        )

    async def BatchGetTweets(
        self, request: pb.BatchGetTweetsRequest, context: Context
    ) -> pb.BatchGetTweetsResponse:
        tweets = await self._tweets.batch_get([require_id(t, "tweet_ids") for t in request.tweet_ids])
        return pb.BatchGetTweetsResponse(tweets=await self.hydrate(tweets))

    async def ListTweetIdsByAuthors(
        self, request: pb.ListTweetIdsByAuthorsRequest, context: Context
    ) -> pb.ListTweetIdsByAuthorsResponse:
        rows = await self._tweets.ids_by_authors(
            [require_id(a, "author_ids") for a in request.author_ids],
            parse_id(request.before_tweet_id, "before_tweet_id", required=False),
            parse_id(request.after_tweet_id, "after_tweet_id", required=False),
            request.limit,
        )
        return pb.ListTweetIdsByAuthorsResponse(
            tweets=[
                pb.TweetRef(
                    tweet_id=str(r.tweet_id),
                    author_id=str(r.author_id),
                    reply_to_author_id=wire_id(r.reply_to_author_id),
                )
                for r in rows
            ]
        )

    async def ListMentionIds(
        self, request: pb.ListMentionIdsRequest, context: Context
    ) -> pb.ListMentionIdsResponse:
        ids = await self._tweets.mention_ids(
            require_id(request.user_id, "user_id"),
            parse_id(request.before_tweet_id, "before_tweet_id", required=False),
            parse_id(request.after_tweet_id, "after_tweet_id", required=False),
            request.limit,
        )
        return pb.ListMentionIdsResponse(tweet_ids=[str(t) for t in ids])

    async def BatchGetMediaTweets(
        self, request: pb.BatchGetMediaTweetsRequest, context: Context
    ) -> pb.BatchGetMediaTweetsResponse:
        found = await self._tweets.media_tweets([require_id(m, "media_ids") for m in request.media_ids])
        return pb.BatchGetMediaTweetsResponse(
            media=[pb.MediaTweet(media_id=str(m), tweet_id=str(t)) for m, t in found.items()]
        )

    async def BatchGetTweetCounts(
        self, request: pb.BatchGetTweetCountsRequest, context: Context
    ) -> pb.BatchGetTweetCountsResponse:
        ids = [require_id(u, "user_ids") for u in request.user_ids]
        counts = await self._tweets.tweet_counts(ids)
        return pb.BatchGetTweetCountsResponse(
            counts=[
                pb.UserTweetCount(user_id=str(u), tweets_count=counts.get(u, 0)) for u in dict.fromkeys(ids)
            ]
        )


def tweet_cache(redis: aioredis.Redis, ttl_seconds: int) -> TweetCache:
    """tweets_svc's cache of tweets and counts (social.caches) on `redis`."""
    return TweetCache(OwnerCache(redis, ttl_seconds), lambda tweet: own_fields(tweet).SerializeToString())


async def setup(runtime: Runtime[TweetsSettings], server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    pool = await runtime.postgres(settings.database_url, "tweets")
    reads = await runtime.reads(pool, settings.database_read_url, "tweets", settings.read_max_lag_seconds)
    redis = await runtime.redis()
    cache = tweet_cache(redis, settings.cache_ttl_seconds)
    outbox = Outbox(pool, redis, settings.outbox_replicas, on_relay=deletion_entries(cache))
    runtime.background(outbox.sweep_forever(settings.outbox_sweep_seconds), "outbox-sweeper")
    users = UsersPeer(runtime.channel(settings.users_addr, UsersPeer.SERVICE))
    media = MediaPeer(runtime.channel(settings.media_addr, MediaPeer.SERVICE))
    store = PostgresTweetStore(
        pool,
        outbox,
        tweet_event,
        like_event,
        cache,
        batch_max=settings.post_batch_max,
        batches_in_flight=settings.post_batches_in_flight,
        reads=reads,
    )
    relations = Relations(RelationsCache(redis), users.relations)
    edit_limits = EditLimits(settings.edit_window_seconds, settings.edit_max)
    tweets = Tweets(store, users, PageTokens(*settings.page_token_secrets), media, relations, edit_limits)
    auth = Authenticator(redis, users.sessions)
    runtime.limit_rates(redis, auth, settings.rate_limits, settings.trusted_proxies)
    trends = TrendCounter(
        redis,
        minute_seconds=settings.trends_minute_seconds,
        baseline_windows=settings.trends_baseline_windows,
        cache_seconds=min(5.0, settings.trends_minute_seconds),
    )

    async def count_hashtags(entry: Entry) -> None:
        try:
            event = pb.TweetEvent.FromString(entry.fields[b"data"])
        except (KeyError, DecodeError) as error:
            raise PoisonEvent(f"undecodable tweet event: {error}") from error
        posted = event.create_time.ToMicroseconds() / 1e6
        now = time.time()
        if event.kind == pb.TweetEvent.KIND_EDITED:
            # The tweet counts once, in the minute it was posted, under the tags it has now.
            previous, current = set(event.previous_hashtags), set(event.hashtags)
            await trends.record(sorted(previous - current), posted, now, delta=-1)
            await trends.record(sorted(current - previous), posted, now, delta=1)
            return
        deleted = event.kind == pb.TweetEvent.KIND_DELETED
        await trends.record(list(event.hashtags), posted, now, delta=-1 if deleted else 1)

    consumer = StreamConsumer(
        redis,
        TWEETS_STREAM,
        TRENDS_GROUP,
        settings.trends_consumer,
        count_hashtags,
        claim_idle_ms=30_000,
        max_deliveries=10,
        forget_idle_ms=settings.consumer_forget_ms,
        read_every_ms=TRENDS_READ_EVERY_MS,
    )
    runtime.background(consumer.run(), f"consume {TWEETS_STREAM}")
    eraser = account_eraser(
        redis, ERASE_GROUP, settings.trends_consumer, tweets.erase_account, settings.consumer_forget_ms
    )
    runtime.background(eraser.run(), f"erase accounts from {ACCOUNTS_STREAM}")
    servicer = TweetServicer(tweets, users, UserCacheReader(redis), auth, trends)
    pb_grpc.add_TweetServiceServicer_to_server(servicer, server)
    return [SERVICE.full_name]
