"""tweets_svc's gRPC edge: requests to domain calls, tweets hydrated with their authors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from meshkit.auth import Authenticator
from meshkit.ids import parse_id, require_id
from meshkit.outbox import Outbox
from meshkit.pagination import PageTokens
from meshkit.peers import UsersPeer
from meshkit.protos import timestamp, wire_id
from meshkit.runtime import Runtime
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as pb_grpc
from tweets_svc.service import Tweet, Tweets
from tweets_svc.storage import PostgresTweetStore

Context = grpc.aio.ServicerContext[Any, Any]


def tweet_event(tweet: Tweet) -> bytes:
    return pb.TweetEvent(
        tweet_id=str(tweet.tweet_id),
        author_id=str(tweet.author_id),
        create_time=timestamp(tweet.create_time),
        reply_to_tweet_id=wire_id(tweet.reply_to_tweet_id),
    ).SerializeToString()


class UserDirectory:
    """Whether a user exists, for the domain's checks."""

    def __init__(self, users: UsersPeer) -> None:
        self._users = users

    async def exists(self, user_id: int) -> bool:
        return bool(await self._users.users([user_id], with_tweet_counts=False))


class TweetServicer(pb_grpc.TweetServiceServicer):
    def __init__(self, tweets: Tweets, users: UsersPeer, auth: Authenticator) -> None:
        self._tweets = tweets
        self._users = users
        self._auth = auth

    async def hydrate(self, tweets: Sequence[Tweet]) -> list[pb.Tweet]:
        """Wire tweets with their authors (and the authors' tweet counts, which live here)."""
        author_ids = list({t.author_id for t in tweets})
        authors = await self._users.users(author_ids, with_tweet_counts=False)
        counts = await self._tweets.tweet_counts(author_ids)
        for author in authors.values():
            author.tweets_count = counts.get(int(author.user_id), 0)
        out = []
        for tweet in tweets:
            out.append(
                pb.Tweet(
                    tweet_id=str(tweet.tweet_id),
                    author_id=str(tweet.author_id),
                    author=authors.get(tweet.author_id),
                    text=tweet.text,
                    create_time=timestamp(tweet.create_time),
                    reply_to_tweet_id=wire_id(tweet.reply_to_tweet_id),
                    reply_count=tweet.reply_count,
                )
            )
        return out

    async def CreateTweet(self, request: pb.CreateTweetRequest, context: Context) -> pb.CreateTweetResponse:
        author_id = await self._auth.user_id(context.invocation_metadata())
        reply_to = parse_id(request.reply_to_tweet_id, "reply_to_tweet_id", required=False)
        tweet = await self._tweets.create(author_id, request.text, reply_to, request.request_id)
        (wire,) = await self.hydrate([tweet])
        return pb.CreateTweetResponse(tweet=wire)

    async def GetTweet(self, request: pb.GetTweetRequest, context: Context) -> pb.GetTweetResponse:
        tweet = await self._tweets.get(require_id(request.tweet_id, "tweet_id"))
        (wire,) = await self.hydrate([tweet])
        return pb.GetTweetResponse(tweet=wire)

    async def ListUserTweets(
        self, request: pb.ListUserTweetsRequest, context: Context
    ) -> pb.ListUserTweetsResponse:
        page = await self._tweets.list_by_user(
            require_id(request.user_id, "user_id"), request.page_size, request.page_token
        )
        return pb.ListUserTweetsResponse(
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
            tweets=[pb.TweetRef(tweet_id=str(t), author_id=str(a)) for t, a in rows]
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


async def setup(runtime: Runtime, server: grpc.aio.Server) -> list[str]:
    settings = runtime.settings
    pool = await runtime.postgres("tweets")
    redis = await runtime.redis()
    outbox = Outbox(pool, redis)
    runtime.background(outbox.sweep_forever(settings.outbox_sweep_seconds), "outbox-sweeper")
    users = UsersPeer(runtime.channel(settings.users_addr))
    store = PostgresTweetStore(pool, outbox, tweet_event)
    tweets = Tweets(store, UserDirectory(users), PageTokens(settings.page_token_secret))
    auth = Authenticator(redis, users.session)
    runtime.limit_rates(redis, auth)
    pb_grpc.add_TweetServiceServicer_to_server(TweetServicer(tweets, users, auth), server)
    return [pb.DESCRIPTOR.services_by_name["TweetService"].full_name]
