"""The shape every server interceptor of the kit shares: wrap each unary, server-streaming and
client-streaming handler of a method in one function of the interceptor's own (errors, telemetry,
call facts, rate limits), once per method; the call facts a handler reads; and answers a handler
prepared as bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Handler = Callable[..., Any]


class Prepared:
    """A response already serialized: a handler may answer with one instead of a message (a page
    assembled from cached bytes, one stream event sent to many streams). Every server of the kit
    sends its bytes as they are (PreparedResponses)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # the protobuf message method it stands in for
        return self.data


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """Subclasses say how to wrap a unary, a server-streaming and a client-streaming behaviour (one
    that reads a stream of requests and answers once: an upload in chunks), given the method name.
    Bidirectional streams are left as they are: the mesh serves none.

    The wrapped handler of a method is built on its first call and kept: later calls of the method
    reuse it (a method's handler never changes), so the interceptors outside this one are the only
    ones asked again, and the outermost answers every call from its own table."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        raise NotImplementedError

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        raise NotImplementedError

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        raise NotImplementedError

    def wrap_deserializer(self, deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        """How requests are parsed (as the handler says, unless a subclass knows better)."""
        return deserializer

    def wrap_serializer(self, serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
        """How responses are serialized (as the handler says, unless a subclass knows better)."""
        return serializer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if (known := self._wrapped.get(method)) is not None:
            return known
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # an unknown method: nothing to keep
        if handler.unary_unary is not None:
            built = grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(handler.unary_unary, method),
                request_deserializer=self.wrap_deserializer(handler.request_deserializer),
                response_serializer=self.wrap_serializer(handler.response_serializer),
            )
        elif handler.unary_stream is not None:
            built = grpc.unary_stream_rpc_method_handler(
                self.wrap_stream(handler.unary_stream, method),
                request_deserializer=self.wrap_deserializer(handler.request_deserializer),
                response_serializer=self.wrap_serializer(handler.response_serializer),
            )
        elif handler.stream_unary is not None:
            built = grpc.stream_unary_rpc_method_handler(
                self.wrap_client_stream(handler.stream_unary, method),
                request_deserializer=self.wrap_deserializer(handler.request_deserializer),
                response_serializer=self.wrap_serializer(handler.response_serializer),
            )
        else:
            built = handler
        self._wrapped[method] = built
        return built


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
        # What the kit found out about this call once and shares with every step of it (the
        # session behind its token: meshkit.auth.Authenticator.caller).
        self.memo: dict[object, Any] = {}

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


class PreparedResponses(HandlerInterceptor):
    """Lets handlers answer with Prepared bytes: sent as they are, never serialized again. It wraps
    no behaviour, so a call pays nothing for it."""

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        return behavior

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        return behavior

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        return behavior

    def wrap_serializer(self, serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
        if serializer is None:
            return None
        serialize = serializer

        def prepared_or_serialized(response: Any) -> bytes:
            return response.data if type(response) is Prepared else serialize(response)

        return prepared_or_serialized
