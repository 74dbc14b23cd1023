"""The async client: one channel to Envoy, the session token, pages as iterators, streams that resume."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweetmesh.users.v1 import users_service_pb2_grpc as users_grpc
from tweetmesh_client.errors import TweetmeshError, error_from

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)
Item = TypeVar("Item")
Event = TypeVar("Event", timeline_pb.StreamHomeTimelineResponse, timeline_pb.StreamGlobalTimelineResponse)

# How long a stream waits before reconnecting when the server gave no RetryInfo: doubling, capped.
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0
# A stream reconnects after these: the server ended it (UNAVAILABLE) or an open failed
# (RESOURCE_EXHAUSTED, or a CANCELLED this side did not ask for: an unaccepted call given up on).
RECONNECT_ON = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED)
# Tweet ids remembered per stream to drop the repeats a resume replays (it starts a second early).
REMEMBERED_IDS = 1000


_Sent_contra = TypeVar("_Sent_contra", bound=Message, contravariant=True)
_Got_co = TypeVar("_Got_co", bound=Message, covariant=True)


class _Unary(Protocol[_Sent_contra, _Got_co]):
    """A unary method of an async stub."""

    def __call__(
        self, request: _Sent_contra, *, timeout: float | None = ..., metadata: Any = ...
    ) -> Awaitable[_Got_co]: ...


class Client:
    """tweetmesh's public API over gRPC (Envoy's port, e.g. "127.0.0.1:8080").

    Pass `credentials` (grpc.ssl_channel_credentials(root_certificates=...)) for Envoy's TLS port.
    `login` keeps the token and every later call sends it; `token=` starts with one already had.
    Failed calls raise TweetmeshError subclasses (see tweetmesh_client.errors). The typed stubs
    are `users`, `tweets` and `timeline`; `call` runs any of their unary methods with the token
    and the errors translated.
    """

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials)
        self.token = token
        self.timeout = timeout
        self.users = users_grpc.UserServiceStub(self._channel)
        self.tweets = tweets_grpc.TweetServiceStub(self._channel)
        self.timeline = timeline_grpc.TimelineServiceStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")] if self.token else []

    async def call(self, method: _Unary[Request, Response], request: Request) -> Response:
        """One unary call with the session's token; a failure raises its TweetmeshError."""
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            raise error_from(error) from None

    # ----- accounts

    async def sign_up(self, handle: str, password: str, display_name: str = "") -> users_pb.User:
        request = users_pb.CreateUserRequest(handle=handle, password=password, display_name=display_name)
        return (await self.call(self.users.CreateUser, request)).user

    async def login(self, handle: str, password: str) -> users_pb.LoginResponse:
        """Signs in and keeps the token for every later call."""
        answer = await self.call(self.users.Login, users_pb.LoginRequest(handle=handle, password=password))
        self.token = answer.token
        return answer

    async def logout(self) -> None:
        await self.call(self.users.Logout, users_pb.LogoutRequest())
        self.token = None

    async def user(self, user_id: str) -> users_pb.User:
        return (await self.call(self.users.GetUser, users_pb.GetUserRequest(user_id=user_id))).user

    async def user_by_handle(self, handle: str) -> users_pb.User:
        request = users_pb.GetUserByHandleRequest(handle=handle)
        return (await self.call(self.users.GetUserByHandle, request)).user

    async def follow(self, user_id: str) -> users_pb.User:
        request = users_pb.FollowUserRequest(user_id=user_id)
        return (await self.call(self.users.FollowUser, request)).user

    async def unfollow(self, user_id: str) -> users_pb.User:
        request = users_pb.UnfollowUserRequest(user_id=user_id)
        return (await self.call(self.users.UnfollowUser, request)).user

    # ----- tweets

    async def post(self, text: str, *, reply_to: str = "", request_id: str | None = None) -> tweets_pb.Tweet:
        """Posts a tweet. A request_id is made when none is given: retrying this call with the same
        one after an unclear failure (Unavailable, a deadline) cannot post twice."""
        request = tweets_pb.CreateTweetRequest(
            text=text, reply_to_tweet_id=reply_to, request_id=request_id or uuid.uuid4().hex
        )
        return (await self.call(self.tweets.CreateTweet, request)).tweet

    async def tweet(self, tweet_id: str) -> tweets_pb.Tweet:
        return (await self.call(self.tweets.GetTweet, tweets_pb.GetTweetRequest(tweet_id=tweet_id))).tweet

    async def delete_tweet(self, tweet_id: str) -> None:
        await self.call(self.tweets.DeleteTweet, tweets_pb.DeleteTweetRequest(tweet_id=tweet_id))

    async def like(self, tweet_id: str) -> tweets_pb.Tweet:
        return (await self.call(self.tweets.LikeTweet, tweets_pb.LikeTweetRequest(tweet_id=tweet_id))).tweet

    async def unlike(self, tweet_id: str) -> tweets_pb.Tweet:
        request = tweets_pb.UnlikeTweetRequest(tweet_id=tweet_id)
        return (await self.call(self.tweets.UnlikeTweet, request)).tweet

    async def retweet(self, tweet_id: str) -> tweets_pb.Tweet:
        return (await self.call(self.tweets.Retweet, tweets_pb.RetweetRequest(tweet_id=tweet_id))).tweet

    # ----- lists, page after page

    async def pages(
        self,
        method: _Unary[Request, Response],
        request: Request,
        items: Callable[[Response], list[Item]],
        *,
        limit: int | None = None,
    ) -> AsyncIterator[Item]:
        """Every item of a paged list (AIP-158), fetching pages as the iteration needs them.

        `request` is the first page's request (page_size in it); `items` picks the items out of
        a response. Stops after `limit` items when given.
        """
        given = 0
        while True:
            page = await self.call(method, request)
            for item in items(page):
                yield item
                given += 1
                if limit is not None and given >= limit:
                    return
            token = getattr(page, "next_page_token", "")
            if not token:
                return
            request = request_with_token(request, token)

    def home_timeline(
        self, *, page_size: int = 50, limit: int | None = None
    ) -> AsyncIterator[tweets_pb.Tweet]:
        request = timeline_pb.GetHomeTimelineRequest(page_size=page_size)
        return self.pages(self.timeline.GetHomeTimeline, request, lambda r: list(r.tweets), limit=limit)

    def user_tweets(
        self, user_id: str, *, page_size: int = 50, limit: int | None = None
    ) -> AsyncIterator[tweets_pb.Tweet]:
        request = tweets_pb.ListUserTweetsRequest(user_id=user_id, page_size=page_size)
        return self.pages(self.tweets.ListUserTweets, request, lambda r: list(r.tweets), limit=limit)

    def global_timeline(
        self, *, page_size: int = 50, limit: int | None = None
    ) -> AsyncIterator[tweets_pb.Tweet]:
        request = tweets_pb.GetGlobalTimelineRequest(page_size=page_size)
        return self.pages(self.tweets.GetGlobalTimeline, request, lambda r: list(r.tweets), limit=limit)

    def search_tweets(self, query: str, *, limit: int | None = None) -> AsyncIterator[tweets_pb.Tweet]:
        request = tweets_pb.SearchTweetsRequest(query=query, page_size=50)
        return self.pages(self.tweets.SearchTweets, request, lambda r: list(r.tweets), limit=limit)

    def followers(self, user_id: str, *, limit: int | None = None) -> AsyncIterator[users_pb.User]:
        request = users_pb.ListFollowersRequest(user_id=user_id, page_size=100)
        return self.pages(self.users.ListFollowers, request, lambda r: list(r.users), limit=limit)

    # ----- live streams

    def stream_home(
        self, since_tweet_id: str = "", *, on_reconnect: Callable[[TweetmeshError], None] | None = None
    ) -> AsyncIterator[timeline_pb.StreamHomeTimelineResponse]:
        """The viewer's home timeline live, for as long as the iteration goes on.

        When the server ends the stream with UNAVAILABLE (a restart, a lost feed, a slow reader), or
        an open fails (RESOURCE_EXHAUSTED: too many streams or opens for now; CANCELLED that this
        side did not ask for: the server gave up on a call it had not accepted in time), it
        reconnects after the RetryInfo delay (else a backoff from 0.5 s doubling to 30 s), from the
        resume point in the error's ErrorInfo (`since_tweet_id`), else from the newest tweet it gave
        you; repeats that a resume replays are dropped. `on_reconnect` is told each error it
        recovered from. Other errors (a revoked token: Unauthenticated) end the iteration by raising.
        """
        return self._resuming(
            lambda since: self.timeline.StreamHomeTimeline(
                timeline_pb.StreamHomeTimelineRequest(since_tweet_id=since), metadata=self._metadata()
            ),
            since_tweet_id,
            on_reconnect,
        )

    def stream_global(
        self, since_tweet_id: str = "", *, on_reconnect: Callable[[TweetmeshError], None] | None = None
    ) -> AsyncIterator[timeline_pb.StreamGlobalTimelineResponse]:
        """Every public tweet live; resumes as stream_home does."""
        return self._resuming(
            lambda since: self.timeline.StreamGlobalTimeline(
                timeline_pb.StreamGlobalTimelineRequest(since_tweet_id=since), metadata=self._metadata()
            ),
            since_tweet_id,
            on_reconnect,
        )

    async def _resuming(
        self,
        open_stream: Callable[[str], Any],
        since: str,
        on_reconnect: Callable[[TweetmeshError], None] | None,
    ) -> AsyncIterator[Any]:
        seen: deque[str] = deque(maxlen=REMEMBERED_IDS)
        delay = FIRST_RETRY_SECONDS
        while True:
            call = open_stream(since)
            try:
                async for event in call:
                    if event.HasField("tweet"):
                        tweet_id = event.tweet.tweet_id
                        if tweet_id in seen:
                            continue
                        seen.append(tweet_id)
                        since = tweet_id
                        delay = FIRST_RETRY_SECONDS
                    yield event
                return  # the server ended the stream cleanly: nothing more will come
            except grpc.aio.AioRpcError as failure:
                error = error_from(failure)
                if failure.code() not in RECONNECT_ON:
                    raise error from None
            finally:
                call.cancel()
            since = error.metadata.get("since_tweet_id") or since
            if on_reconnect is not None:
                on_reconnect(error)
            await asyncio.sleep(error.retry_delay if error.retry_delay is not None else delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)


def request_with_token(request: Request, token: str) -> Request:
    """A copy of a list request asking for the page after `token`."""
    following = type(request)()
    following.CopyFrom(request)
    following.page_token = token  # type: ignore[attr-defined]
    return following
