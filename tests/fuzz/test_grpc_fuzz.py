"""Generated requests straight to every service over gRPC, internal RPCs included (Envoy never
routes those, but a buggy or hostile peer could send anything): the answer is never UNKNOWN or
INTERNAL, and comes before the caller's deadline. Methods and fields come from the descriptor set.

Server-streaming methods are left to the HTTP fuzzer (an open stream only ends at its deadline);
client-streaming ones get a stream of a few generated messages.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.mesh import SERVICES, Mesh
from social import peers  # noqa: F401  (loads the users and tweets services into the pool)
from tests.conftest import report_lines
from tests.fuzz.routes import DESCRIPTOR_SET, Known
from tests.helpers import Metadata, bearer
from tweetmesh.fanout.v1 import fanout_service_pb2  # noqa: F401
from tweetmesh.media.v1 import media_service_pb2  # noqa: F401
from tweetmesh.notifications.v1 import notifications_service_pb2  # noqa: F401
from tweetmesh.timeline.v1 import timeline_service_pb2  # noqa: F401

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
_T = descriptor_pb2.FieldDescriptorProto
BUGS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
CALL_TIMEOUT = 20.0


@dataclass(frozen=True)
class Method:
    service: str  # a name of devstack.mesh.SERVICES
    path: str  # /package.Service/Method
    request_type: str
    client_streaming: bool = False


def methods() -> list[Method]:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file
    found = []
    for file in files:
        if not file.package.startswith("tweetmesh."):
            continue
        for service in file.service:
            for method in service.method:
                if method.server_streaming:
                    continue
                found.append(
                    Method(
                        file.package.split(".")[1],
                        f"/{file.package}.{service.name}/{method.name}",
                        method.input_type.lstrip("."),
                        method.client_streaming,
                    )
                )
    return found


ALL_METHODS = methods()
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _value(field: Any, known: Known, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == _T.TYPE_STRING:
        ids = st.sampled_from(known.user_ids + known.tweet_ids)
        return ids | st.text(max_size=80) | st.sampled_from([*known.handles, "", "0", "-1", "9" * 30])
    if kind in {_T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32}:
        return st.integers(min_value=-(2**31), max_value=2**31 - 1)
    if kind in {_T.TYPE_UINT32, _T.TYPE_FIXED32}:
        return st.integers(min_value=0, max_value=2**32 - 1)
    if kind in {_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64}:
        return _int64
    if kind in {_T.TYPE_UINT64, _T.TYPE_FIXED64}:
        return st.integers(min_value=0, max_value=2**64 - 1)
    if kind == _T.TYPE_BOOL:
        return st.booleans()
    if kind == _T.TYPE_BYTES:
        return st.binary(max_size=40)
    if kind == _T.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    if kind == _T.TYPE_MESSAGE and depth < 2:
        return _message(field.message_type, known, depth + 1)
    return st.nothing()


@st.composite
def _message(draw: st.DrawFn, descriptor: Any, known: Known, depth: int = 0) -> Any:
    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        value = _value(field, known, depth)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            # A map: a few entries, keys and values drawn as the entry's fields.
            key, item = (_value(f, known, depth) for f in field.message_type.fields)
            entries = draw(st.dictionaries(key, item, max_size=5))
            getattr(message, field.name).update(entries)
        elif field.is_repeated:
            # Mostly a few; now and then far more than any batch limit allows.
            size = draw(st.integers(0, 5) | st.just(2500))
            items = [draw(value) for _ in range(min(size, 5))]
            if size > 5 and items and field.type != _T.TYPE_MESSAGE:
                items = (items * (size // len(items) + 1))[:size]
            getattr(message, field.name).extend(items)
        elif field.type == _T.TYPE_MESSAGE:
            if depth < 2:
                getattr(message, field.name).CopyFrom(draw(value))
        else:
            setattr(message, field.name, draw(value))
    return message


@st.composite
def _payload(draw: st.DrawFn, method: Method, known: Known) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=60))  # not a message at all, most likely
    descriptor = descriptor_pool.Default().FindMessageTypeByName(method.request_type)
    return bytes(draw(_message(descriptor, known)).SerializeToString())


@st.composite
def calls(draw: st.DrawFn, known: Known) -> tuple[Method, list[bytes], Metadata]:
    """A method, its request (a few for a client stream) and its metadata."""
    method = draw(st.sampled_from(ALL_METHODS))
    count = draw(st.integers(0, 4)) if method.client_streaming else 1
    payloads = [draw(_payload(method, known)) for _ in range(count)]
    token = draw(
        st.none()
        | st.sampled_from(known.tokens)
        | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=50)
    )
    metadata = () if token is None else bearer(token)
    return method, payloads, metadata


@pytest.fixture(scope="module")
def channels(mesh: Mesh) -> Iterator[dict[str, grpc.Channel]]:
    opened = {name: grpc.insecure_channel(f"127.0.0.1:{mesh.ports.of(name)}") for name in SERVICES}
    yield opened
    for channel in opened.values():
        channel.close()


def test_every_rpc_of_every_service_is_fuzzed() -> None:
    assert {m.service for m in ALL_METHODS} == set(SERVICES)
    assert any(m.path.endswith("/BatchGetUsers") for m in ALL_METHODS)
    assert any(m.client_streaming for m in ALL_METHODS)


def test_generated_grpc_requests_never_get_unknown_internal_or_a_hang(
    channels: dict[str, grpc.Channel], known: Known, request: pytest.FixtureRequest
) -> None:
    codes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(calls(known))
    def answered_properly(call: tuple[Method, list[bytes], Metadata]) -> None:
        method, payloads, metadata = call
        channel = channels[method.service]
        try:
            if method.client_streaming:
                upload: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(method.path)
                upload(iter(payloads), metadata=metadata, timeout=CALL_TIMEOUT)
            else:
                invoke: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method.path)
                invoke(payloads[0], metadata=metadata, timeout=CALL_TIMEOUT)
            codes["OK"] += 1
        except grpc.RpcError as error:
            code = error.code()
            codes[code.name] += 1
            sent = [p[:100] for p in payloads]
            assert code not in BUGS, f"{method.path}: {code.name} {error.details()} for {sent!r}"

    try:
        answered_properly()
    finally:
        summary = ", ".join(f"{code}: {count}" for code, count in sorted(codes.items()))
        report_lines(request.config).append(f"fuzz: {sum(codes.values())} gRPC requests; codes {summary}")
