"""The shape every server interceptor of the kit shares: wrap each unary and server-streaming
handler of a call in one function of the interceptor's own (errors, telemetry)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Handler = Callable[..., Any]


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """Subclasses say how to wrap a unary and a server-streaming behaviour, given the method name."""

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        raise NotImplementedError

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
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
        return handler
