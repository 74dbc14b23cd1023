"""The kit's server interceptors on a real in-process gRPC server: each method's chain is built
once, a handler may answer with prepared bytes, and a call's session is checked once, shared by the
rate limits and the handler."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from meshkit.auth import Authenticator, Session, cache_key, new_token
from meshkit.interceptors import CallFactsInterceptor, HandlerInterceptor, Prepared, PreparedResponses
from meshkit.ratelimit import Limit, RateLimitInterceptor, Scope
from meshkit.settings import Rate
from meshkit.status import ErrorInterceptor
from tests.fakes import FakeSessionRedis
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb

SERVICE = "test.Kit"
LIMITED = f"/{SERVICE}/Limited"


class Rates:
    write = Rate(1000, 1.0)


class CountingInterceptor(HandlerInterceptor):
    """Counts how often it is asked for a method's handler (the chain is built once per method)."""

    def __init__(self) -> None:
        super().__init__()
        self.built = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        self.built += 1
        return await continuation(handler_call_details)


async def serve(redis: FakeSessionRedis) -> tuple[grpc.aio.Server, int, CountingInterceptor, list[int]]:
    auth = Authenticator(redis, _no_owner)  # type: ignore[arg-type]
    limiter = RateLimitInterceptor({LIMITED: (Limit("write", Scope.USER, "write"),)})
    limiter.bind(redis, auth, Rates(), ())  # type: ignore[arg-type]
    counting = CountingInterceptor()
    seen: list[int] = []

    async def limited(request: pb.GetTweetRequest, context: Any) -> pb.GetTweetResponse:
        seen.append(await auth.caller_id(context))
        return pb.GetTweetResponse(tweet=pb.Tweet(tweet_id=request.tweet_id))

    async def prepared(request: pb.GetTweetRequest, context: Any) -> Prepared:
        return Prepared(pb.GetTweetResponse(tweet=pb.Tweet(text="as prepared")).SerializeToString())

    async def streamed(request: pb.GetTweetRequest, context: Any) -> AsyncIterator[Any]:
        yield pb.GetTweetResponse(tweet=pb.Tweet(text="built"))
        yield Prepared(pb.GetTweetResponse(tweet=pb.Tweet(text="prepared")).SerializeToString())

    def unary(behavior: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=pb.GetTweetRequest.FromString,
            response_serializer=pb.GetTweetResponse.SerializeToString,
        )

    handlers = {
        "Limited": unary(limited),
        "Prepared": unary(prepared),
        "Streamed": grpc.unary_stream_rpc_method_handler(
            streamed,
            request_deserializer=pb.GetTweetRequest.FromString,
            response_serializer=pb.GetTweetResponse.SerializeToString,
        ),
    }
    server = grpc.aio.server(
        interceptors=[PreparedResponses(), CallFactsInterceptor(), counting, ErrorInterceptor(5.0), limiter]
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, counting, seen


async def _no_owner(tokens: Sequence[str]) -> dict[str, Session]:
    return {}


def _call(channel: grpc.aio.Channel, name: str) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{name}",
        request_serializer=pb.GetTweetRequest.SerializeToString,
        response_deserializer=pb.GetTweetResponse.FromString,
    )


async def test_one_session_check_per_call_shared_by_the_rate_limits_and_the_handler() -> None:
    token = new_token()
    redis = FakeSessionRedis({cache_key(token): f"42:{int(time.time()) + 3600}".encode()})
    server, port, _, seen = await serve(redis)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for n in range(3):
                reply = await _call(channel, "Limited")(
                    pb.GetTweetRequest(tweet_id=str(n)), metadata=(("authorization", f"Bearer {token}"),)
                )
                assert reply.tweet.tweet_id == str(n)
    finally:
        await server.stop(0)
    assert seen == [42, 42, 42]
    assert redis.charges == 3  # the rate limits did run, per user
    assert redis.gets == 3  # and each call read the session once


async def test_each_methods_chain_is_built_once_and_prepared_bytes_are_sent_as_they_are() -> None:
    server, port, counting, _ = await serve(FakeSessionRedis())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(5):
                reply = await _call(channel, "Prepared")(pb.GetTweetRequest())
                assert reply.tweet.text == "as prepared"
            stream = channel.unary_stream(
                f"/{SERVICE}/Streamed",
                request_serializer=pb.GetTweetRequest.SerializeToString,
                response_deserializer=pb.GetTweetResponse.FromString,
            )
            for _ in range(2):
                assert [r.tweet.text async for r in stream(pb.GetTweetRequest())] == ["built", "prepared"]
    finally:
        await server.stop(0)
    assert counting.built == 2  # once for each of the two methods called, not once per call
