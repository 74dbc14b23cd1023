"""The public HTTP API as the descriptor set (gen/tweetmesh.pb) declares it, and hypothesis
strategies for requests to it: well-formed, nearly right, and plain hostile.

The routes come from each method's google.api.http option, the bodies and query parameters from
its request message, so a new RPC is fuzzed without touching this file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from hypothesis import strategies as st

DESCRIPTOR_SET = Path(__file__).resolve().parents[2] / "gen" / "tweetmesh.pb"
_T = descriptor_pb2.FieldDescriptorProto
_PATH_VARIABLE = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Field:
    name: str
    json_name: str
    type: int
    repeated: bool
    message: str  # the message type's full name, for message fields


@dataclass(frozen=True)
class Route:
    rpc: str
    verb: str
    template: str
    body: str
    streaming: bool
    fields: tuple[Field, ...]

    @property
    def path_variables(self) -> list[str]:
        return _PATH_VARIABLE.findall(self.template)


def routes(descriptor_set: Path = DESCRIPTOR_SET) -> list[Route]:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    messages = {f".{file.package}.{message.name}": message for file in files for message in file.message_type}
    found = []
    for file in files:
        for service in file.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue  # internal: Envoy does not route it
                rule = method.options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                assert verb in {"get", "post", "put", "patch", "delete"}, f"{method.name}: {verb}"
                fields = tuple(
                    Field(f.name, f.json_name, f.type, f.label == _T.LABEL_REPEATED, f.type_name)
                    for f in messages[method.input_type].field
                )
                found.append(
                    Route(
                        f"{service.name}.{method.name}",
                        verb.upper(),
                        getattr(rule, verb),
                        rule.body,
                        method.server_streaming,
                        fields,
                    )
                )
    return found


@dataclass(frozen=True)
class Request:
    route: Route
    method: str
    path: str
    body: bytes | None
    token: str | None

    def describe(self) -> str:
        body = (self.body or b"")[:200]
        return f"{self.method} {self.path} body={body!r} auth={'yes' if self.token else 'no'}"


@dataclass(frozen=True)
class Known:
    """Real things on the mesh, so that generated requests also reach the code behind validation."""

    user_ids: list[str]
    tweet_ids: list[str]
    handles: list[str]
    tokens: list[str]


_ids = st.integers(min_value=0, max_value=2**63 - 1).map(str)
_junk_text = st.text(max_size=300) | st.text(st.characters(codec=None), max_size=50)
_ints = st.integers(min_value=-(2**70), max_value=2**70)


def _scalar(field: Field, known: Known) -> st.SearchStrategy[Any]:
    """A JSON value for a field: often the right type and plausible, sometimes not."""
    if field.name.endswith("_id") or field.name.endswith("_ids"):
        good: st.SearchStrategy[Any] = st.sampled_from(known.user_ids + known.tweet_ids) | _ids
    elif field.type == _T.TYPE_STRING:
        good = _junk_text | st.sampled_from(known.handles) | st.just("correct horse battery")
    elif field.type in {_T.TYPE_INT32, _T.TYPE_INT64, _T.TYPE_UINT32, _T.TYPE_UINT64}:
        good = st.integers(min_value=-5, max_value=200) | _ints
    elif field.type == _T.TYPE_BOOL:
        good = st.booleans()
    elif field.type == _T.TYPE_MESSAGE and field.message == ".google.protobuf.FieldMask":
        good = st.lists(st.sampled_from(["handle", "user_id", "nope", ""]), max_size=3).map(",".join)
    elif field.type == _T.TYPE_MESSAGE and field.message == ".google.protobuf.Timestamp":
        good = st.sampled_from(["2026-01-01T00:00:00Z", "not a time", "9999-99-99T99:99:99Z"])
    else:
        good = st.none()
    wrong: st.SearchStrategy[Any] = (
        st.none() | st.booleans() | _ints | st.floats(allow_nan=False) | st.just({}) | st.just([1, "a"])
    )
    value = st.one_of(good, good, good, wrong)
    return st.lists(value, max_size=4) if field.repeated else value


def _query_value(field: Field, known: Known) -> st.SearchStrategy[str]:
    if field.name == "page_token":
        return _junk_text | st.just("")
    if field.name.endswith("_id"):
        return st.sampled_from(known.tweet_ids + known.user_ids) | _ids | _junk_text
    return st.integers(min_value=-3, max_value=500).map(str) | _ints.map(str) | _junk_text


def _raw(text: str) -> bytes:
    """UTF-8, lone surrogates included as the invalid bytes they make: hostile input, sent as is."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def requests(draw: st.DrawFn, all_routes: list[Route], known: Known) -> Request:
    route = draw(st.sampled_from(all_routes))
    path = route.template
    for variable in route.path_variables:
        if variable.endswith("_id"):
            value = draw(st.sampled_from(known.user_ids + known.tweet_ids) | _ids | _junk_text)
        else:
            value = draw(st.sampled_from(known.handles) | _junk_text)
        path = path.replace("{" + variable + "}", quote(_raw(value), safe=""))
    others = [f for f in route.fields if f.name not in route.path_variables]
    body: bytes | None = None
    if route.body == "*":
        if draw(st.integers(0, 9)) == 0:  # not JSON, or not an object
            body = draw(st.binary(max_size=100) | st.sampled_from([b"[]", b"null", b'"x"', b"{", b"1e999"]))
        else:
            chosen = draw(st.lists(st.sampled_from(others), unique=True)) if others else []
            payload = {
                (f.json_name if draw(st.booleans()) else f.name): draw(_scalar(f, known)) for f in chosen
            }
            if draw(st.integers(0, 9)) == 0:
                payload[draw(st.text(max_size=10))] = draw(_junk_text)  # a field that does not exist
            body = _raw(json.dumps(payload, ensure_ascii=draw(st.booleans())))
    elif others:
        chosen = draw(st.lists(st.sampled_from(others), unique=True, max_size=3))
        query = {f.name: _raw(draw(_query_value(f, known))) for f in chosen}
        if query:
            path += "?" + urlencode(query)
    token = draw(
        st.none()
        | st.sampled_from(known.tokens)
        | st.sampled_from(known.tokens).map(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"))
        | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
    )
    verb = route.verb if draw(st.integers(0, 19)) else draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    return Request(route, verb, path, body, token)
