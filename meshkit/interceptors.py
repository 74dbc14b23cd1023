"""The shape every server interceptor of the kit shares: wrap each unary, server-streaming and
client-streaming handler of a call in one function of the interceptor's own (errors, telemetry,
call facts, rate limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Handler = Callable[..., Any]


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """Subclasses say how to wrap a unary, a server-streaming and a client-streaming behaviour (one
    that reads a stream of requests and answers once: an upload in chunks), given the method name.
    Bidirectional streams are left as they are: the mesh serves none."""

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        raise NotImplementedError

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        raise NotImplementedError

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        raise NotImplementedError

    def wrap_deserializer(self, deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        """How requests are parsed (as the handler says, unless a subclass knows better)."""
        return deserializer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(handler.unary_unary, method),
                request_deserializer=self.wrap_deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self.wrap_stream(handler.unary_stream, method),
                request_deserializer=self.wrap_deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self.wrap_client_stream(handler.stream_unary, method),
                request_deserializer=self.wrap_deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler


class CallFacts:
    """A servicer context whose invocation metadata and peer were read when the handler started.

    grpc.aio releases the core call once the call's task ends (a cancelled call's task ends at
    once), while work the handler started may still run: a unary handler past its time limit or
    one unwinding from a cancellation (meshkit.status.within). Reading the metadata or the peer
    from the released call reads freed memory: garbage metadata, or a segfault in peer(). Every
    other method is the context's own.
    """

    def __init__(self, context: Any) -> None:
        self._context = context
        self._metadata = tuple(context.invocation_metadata() or ())
        self._peer: str = context.peer()

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class CallFactsInterceptor(HandlerInterceptor):
    """Hands every handler a CallFacts context; the outermost interceptor, so all of them see it."""

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        async def handle(request: Any, context: Any) -> Any:
            return await behavior(request, CallFacts(context))

        return handle

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
            async for response in behavior(request, CallFacts(context)):
                yield response

        return handle

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        async def handle(requests: Any, context: Any) -> Any:
            return await behavior(requests, CallFacts(context))

        return handle
