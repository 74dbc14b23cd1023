"""Holds every request to the rules its proto declares (protovalidate's `buf.validate` field
options) before a handler sees it: a request that breaks one is INVALID_ARGUMENT, with one BadRequest
field violation per broken rule. The protos are the one place those rules are written; tools/openapi.py
publishes the same rules in the OpenAPI description."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import protovalidate
from google.protobuf.message import Message

from meshkit.errors import FieldViolation, InvalidArgument
from meshkit.interceptors import Handler, HandlerInterceptor

_validator = protovalidate.Validator()


def _path(violation: protovalidate.Violation, request: Message) -> str:
    """The violated field as the request names it: `text`, `tweet_ids[3]`, `user.handle`. A rule of
    the whole message (buf.validate.message cel) names the field it is about by its id, when its id
    is a field of the request ("text": text may be empty only with media); else the path is empty."""
    field = violation.proto.field
    rule_id = violation.proto.rule_id
    if (field is None or not field.elements) and rule_id in request.DESCRIPTOR.fields_by_name:
        return rule_id
    parts = []
    for element in field.elements if field is not None else ():
        subscript = element.subscript
        parts.append(element.field_name + ("" if subscript is None else f"[{subscript.value!r}]"))
    return ".".join(parts)


def _printable(text: str) -> str:
    """`text` with characters a terminal or log would not show (a rule's pattern names some)
    written as escapes."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def violations(request: Message) -> tuple[FieldViolation, ...]:
    """Every rule of its proto that `request` breaks, none if it is valid."""
    return tuple(
        FieldViolation(_path(v, request), _printable(v.proto.message))
        for v in _validator.collect_violations(request)
    )


def check(request: Message) -> None:
    """INVALID_ARGUMENT naming every broken rule, if `request` breaks any."""
    if found := violations(request):
        raise InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in found),
            reason="INVALID_FIELD",
            metadata={"field": found[0].field},
            violations=found,
        )


class ValidationInterceptor(HandlerInterceptor):
    """Checks each request of a unary or server-streaming call before the handler runs."""

    def wrap_unary(self, behavior: Handler, method: str) -> Handler:
        async def handle(request: Any, context: Any) -> Any:
            check(request)
            return await behavior(request, context)

        return handle

    def wrap_stream(self, behavior: Handler, method: str) -> Handler:
        async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
            check(request)
            async for response in behavior(request, context):
                yield response

        return handle

    def wrap_client_stream(self, behavior: Handler, method: str) -> Handler:
        async def handle(requests: Any, context: Any) -> Any:
            async def checked() -> AsyncIterator[Any]:
                async for request in requests:
                    check(request)
                    yield request

            return await behavior(checked(), context)

        return handle


__all__ = ["ValidationInterceptor", "check", "violations"]
