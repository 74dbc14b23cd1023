"""Writes the OpenAPI 3 description of the public HTTP/JSON API from the protos' descriptor set.

The descriptor set (gen/tweetmesh.pb) is what Envoy transcodes with, so the spec describes exactly
the routes Envoy serves: every RPC with a google.api.http rule, its path and query parameters,
request body and response, as Envoy's transcoder renders them (proto field names, 64-bit integers
as strings, enums as names, Timestamps as RFC 3339, every primitive field printed). Errors are the
google.rpc.Status JSON Envoy sends. `make gen` writes docs/openapi.yaml; `make check-gen` fails when
it has drifted. Usage: python tools/openapi.py DESCRIPTOR_SET OUT.yaml
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

FieldProto = descriptor_pb2.FieldDescriptorProto
ROOT_PACKAGE = "tweetmesh."
TITLE = "tweetmesh public API"
SERVER = "http://127.0.0.1:8080"
# The transcoder sends a server stream as one JSON object per line with this content type.
STREAM_CONTENT_TYPE = "application/json"
# A google.api.HttpBody body is raw bytes of its own content type, not JSON.
HTTP_BODY = "google.api.HttpBody"


def _raw() -> dict[str, Any]:
    return {"*/*": {"schema": {"type": "string", "format": "binary"}}}


_SCALARS: dict[int, dict[str, Any]] = {
    FieldProto.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldProto.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldProto.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    FieldProto.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    # Proto3 JSON renders 64-bit integers as decimal strings.
    FieldProto.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldProto.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FieldProto.TYPE_BOOL: {"type": "boolean"},
    FieldProto.TYPE_STRING: {"type": "string"},
    FieldProto.TYPE_BYTES: {"type": "string", "format": "byte"},
}
# Well-known types have their own JSON forms.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int64", "minimum": 0},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
}
_ERROR_SCHEMA = {
    "type": "object",
    "description": "A google.rpc.Status as Envoy renders a gRPC error: the gRPC code (3 invalid "
    "argument, 5 not found, 6 already exists, 7 permission denied, 8 rate limited, 14 unavailable, "
    "16 unauthenticated), a message, and google.rpc details such as ErrorInfo, BadRequest (field "
    "violations) and RetryInfo.",
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"$ref": "#/components/schemas/google.protobuf.Any"}},
    },
    "required": ["code", "message"],
}
# The HTTP statuses Envoy maps gRPC errors to (the documented ones; any other is 'default').
_ERROR_STATUSES = {
    "400": "Invalid argument (the details name the bad fields).",
    "401": "Missing, unknown or expired bearer token.",
    "403": "Not allowed for this user.",
    "404": "No such resource (or an unknown route).",
    "409": "Already exists.",
    "429": "Rate limited (RetryInfo says when to retry).",
    "503": "A dependency or service of the mesh is unavailable; retry later.",
}


@dataclass(frozen=True, slots=True)
class _Route:
    verb: str
    path: str
    body: str
    response_body: str


def _rules(rule: http_pb2.HttpRule) -> list[_Route]:
    verb = rule.WhichOneof("pattern")
    routes = []
    if verb is not None and verb != "custom":
        routes.append(_Route(verb, getattr(rule, verb), rule.body, rule.response_body))
    elif verb == "custom":
        routes.append(_Route(rule.custom.kind.lower(), rule.custom.path, rule.body, rule.response_body))
    for extra in rule.additional_bindings:
        routes.extend(_rules(extra))
    return routes


def _path_params(template: str) -> tuple[str, list[str]]:
    """The OpenAPI path for a google.api.http template and its parameter names ({a=b/*} -> {a})."""
    names: list[str] = []

    def plain(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return "{" + match.group(1) + "}"

    return re.sub(r"\{([^}=]+)(?:=[^}]*)?\}", plain, template), names


class _Spec:
    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self._messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self._enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self._comments: dict[tuple[str, tuple[int, ...]], str] = {}
        self._where: dict[str, tuple[str, tuple[int, ...]]] = {}
        self._files = files
        self.schemas: dict[str, Any] = {}
        for file in files:
            for location in file.source_code_info.location:
                text = location.leading_comments.strip() or location.trailing_comments.strip()
                if text:
                    self._comments[(file.name, tuple(location.path))] = " ".join(
                        line.strip() for line in text.splitlines()
                    )
            for index, message in enumerate(file.message_type):
                self._index_message(file, f"{file.package}.{message.name}", message, (4, index))
            for enum in file.enum_type:
                self._enums[f"{file.package}.{enum.name}"] = enum

    def _index_message(
        self, file: descriptor_pb2.FileDescriptorProto, name: str, message: Any, path: tuple[int, ...]
    ) -> None:
        self._messages[name] = message
        self._where[name] = (file.name, path)
        for index, nested in enumerate(message.nested_type):
            self._index_message(file, f"{name}.{nested.name}", nested, (*path, 3, index))
        for nested_enum in message.enum_type:
            self._enums[f"{name}.{nested_enum.name}"] = nested_enum

    def _comment(self, name: str, *path: int) -> str:
        file, base = self._where[name]
        return self._comments.get((file, (*base, *path)), "")

    # ----- schemas

    def _field_schema(self, field: FieldProto) -> dict[str, Any]:
        if field.type == FieldProto.TYPE_MESSAGE:
            entry = self._messages[field.type_name.lstrip(".")]
            if entry.options.map_entry:
                return {"type": "object", "additionalProperties": self._field_schema(entry.field[1])}
            single = self.ref(field.type_name.lstrip("."))
        elif field.type == FieldProto.TYPE_ENUM:
            enum = self._enums[field.type_name.lstrip(".")]
            single = {"type": "string", "enum": [v.name for v in enum.value]}
        else:
            single = dict(_SCALARS[field.type])
        if field.label == FieldProto.LABEL_REPEATED:
            return {"type": "array", "items": single}
        return single

    def ref(self, name: str) -> dict[str, Any]:
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages refer to themselves
            self.schemas[name] = self._message_schema(name)
        return {"$ref": f"#/components/schemas/{name}"}

    def _message_schema(self, name: str, *, leave_out: frozenset[str] = frozenset()) -> dict[str, Any]:
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        message = self._messages[name]
        properties: dict[str, Any] = {}
        for index, field in enumerate(message.field):
            if field.name in leave_out:
                continue
            schema = self._field_schema(field)
            description = self._comment(name, 2, index)
            if field.HasField("oneof_index") and not field.proto3_optional:
                group = message.oneof_decl[field.oneof_index].name
                description = f"{description} (one of `{group}`: at most one is set)".strip()
            if description:
                schema = (
                    {"description": description, **schema}
                    if "$ref" not in schema
                    else {
                        "description": description,
                        "allOf": [schema],
                    }
                )
            properties[field.name] = schema
        whole: dict[str, Any] = {"type": "object", "properties": properties}
        if description := self._comment(name):
            whole = {"description": description, **whole}
        return whole

    def body_schema(self, name: str, body: str, path_params: list[str]) -> dict[str, Any]:
        if body == "*":
            return self._message_schema(name, leave_out=frozenset(path_params))
        field = next(f for f in self._messages[name].field if f.name == body)
        return self._field_schema(field)

    def query_params(self, name: str, bound: set[str]) -> list[dict[str, Any]]:
        """Every top-level scalar, enum or repeated scalar field not in the path or body."""
        params = []
        for index, field in enumerate(self._messages[name].field):
            if field.name in bound or field.type == FieldProto.TYPE_MESSAGE:
                continue
            param: dict[str, Any] = {"name": field.name, "in": "query", "schema": self._field_schema(field)}
            if description := self._comment(name, 2, index):
                param["description"] = description
            if field.label == FieldProto.LABEL_REPEATED:
                param["explode"] = True
            params.append(param)
        return params

    def field_type(self, message: str, field_name: str) -> str:
        """The message type of a top-level field ("" for a scalar, or no such field: "*")."""
        return next(
            (f.type_name.lstrip(".") for f in self._messages[message].field if f.name == field_name), ""
        )

    def _result(self, response: str, route: _Route) -> dict[str, Any]:
        if route.response_body:
            return self.field_schema(response, route.response_body)
        return self.ref(response)

    def field_schema(self, message: str, field_name: str) -> dict[str, Any]:
        top = field_name.split(".", maxsplit=1)[0]
        field = next(f for f in self._messages[message].field if f.name == top)
        return self._field_schema(field)

    # ----- operations

    def paths(self) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        for file in self._files:
            if not file.package.startswith(ROOT_PACKAGE):
                continue
            for s_index, service in enumerate(file.service):
                for m_index, method in enumerate(service.method):
                    if not method.options.HasExtension(annotations_pb2.http):
                        continue
                    rule = method.options.Extensions[annotations_pb2.http]
                    comment = self._comments.get((file.name, (6, s_index, 2, m_index)), "")
                    for number, route in enumerate(_rules(rule), start=1):
                        path, operation = self._operation(file.package, service.name, method, route, comment)
                        if number > 1:  # an additional binding: operation ids must stay unique
                            operation["operationId"] += f"_{number}"
                        if route.verb in paths.setdefault(path, {}):
                            raise SystemExit(f"two RPCs are bound to {route.verb.upper()} {path}")
                        paths[path][route.verb] = operation
        return dict(sorted(paths.items()))

    def _operation(
        self,
        package: str,
        service: str,
        method: descriptor_pb2.MethodDescriptorProto,
        route: _Route,
        comment: str,
    ) -> tuple[str, dict[str, Any]]:
        request = method.input_type.lstrip(".")
        response = method.output_type.lstrip(".")
        path, names = _path_params(route.path)
        parameters = [
            {"name": n, "in": "path", "required": True, "schema": self.field_schema(request, n)}
            for n in names
        ]
        bound = {n.split(".", maxsplit=1)[0] for n in names}
        if route.body == "*":
            bound |= {f.name for f in self._messages[request].field}
        elif route.body:
            bound.add(route.body)
        parameters += self.query_params(request, bound)
        operation: dict[str, Any] = {
            "operationId": f"{service}_{method.name}",
            "tags": [service],
            "summary": f"{package}.{service}.{method.name}",
        }
        if comment:
            operation["description"] = comment
        if parameters:
            operation["parameters"] = parameters
        if route.body:
            if self.field_type(request, route.body) == HTTP_BODY:
                content: dict[str, Any] = _raw()
            elif method.client_streaming:
                # A client stream through the transcoder: a JSON array of the messages, in order.
                schema = self.body_schema(request, route.body, names)
                content = {"application/json": {"schema": {"type": "array", "items": schema}}}
            else:
                content = {"application/json": {"schema": self.body_schema(request, route.body, names)}}
            operation["requestBody"] = {"required": True, "content": content}
        if route.response_body and self.field_type(response, route.response_body) == HTTP_BODY:
            ok = {"description": "The bytes, with their own Content-Type.", "content": _raw()}
        elif method.server_streaming:
            ok = {
                "description": "A stream of newline-delimited JSON objects, one per event.",
                "content": {STREAM_CONTENT_TYPE: {"schema": self._result(response, route)}},
            }
        else:
            ok = {
                "description": "OK",
                "content": {"application/json": {"schema": self._result(response, route)}},
            }
        operation["responses"] = {
            "200": ok,
            **{code: {"$ref": f"#/components/responses/Error{code}"} for code in _ERROR_STATUSES},
            "default": {"$ref": "#/components/responses/Error"},
        }
        return path, operation


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
    }


def build(descriptor_set: bytes) -> dict[str, Any]:
    files = list(descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file)
    spec = _Spec(files)
    paths = spec.paths()
    spec.ref("google.protobuf.Any")
    schemas = dict(sorted(spec.schemas.items())) | {"google.rpc.Status": _ERROR_SCHEMA}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": TITLE,
            "version": "v1",
            "description": "Generated from protos/ by tools/openapi.py (make gen); do not edit. "
            "The same API is served as native gRPC on the same port.",
        },
        "servers": [{"url": SERVER, "description": "make run"}],
        # Calls that act as a user need the token from POST /v1/sessions; the others take none.
        "security": [{"bearerAuth": []}, {}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "The token from Login."}
            },
            "schemas": schemas,
            "responses": {
                "Error": _error_response("Any other gRPC error, as google.rpc.Status JSON."),
                **{f"Error{code}": _error_response(text) for code, text in _ERROR_STATUSES.items()},
            },
        },
    }


def render(descriptor_set: bytes) -> str:
    header = "# Generated by tools/openapi.py from protos/ (make gen). Do not edit.\n"
    return header + yaml.safe_dump(build(descriptor_set), sort_keys=False, allow_unicode=True, width=100)


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(source.read_bytes()))


if __name__ == "__main__":
    main()
