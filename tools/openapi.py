"""Writes the OpenAPI 3 description of the public HTTP/JSON API from the protos' descriptor set.

The descriptor set (gen/tweetmesh.pb) is what Envoy transcodes with, so the spec describes exactly
the routes Envoy serves: every RPC with a google.api.http rule, its path and query parameters,
request body and response, as Envoy's transcoder renders them (proto field names, 64-bit integers
as strings, enums as names, Timestamps as RFC 3339, every primitive field printed). Errors are the
google.rpc.Status JSON Envoy sends. The request rules the protos declare (protovalidate's buf.validate
options, which the services enforce) become the schema's constraints: required, minLength, maxLength,
pattern, format, minimum, maximum, exclusiveMinimum, exclusiveMaximum, enum, minItems, maxItems,
uniqueItems, and exactly-one-of rules (oneOf). A required string is at least one character long (proto3
has no other way to leave it out). OpenAPI 3.1: a request body's property names are not empty (the
transcoder ignores properties a request does not have, but refuses a nameless one), and a property
that may be left out may be null (proto3's JSON mapping reads null as not sent). `make gen` writes
docs/openapi.yaml; `make check-gen` fails when it has drifted.
Usage: python tools/openapi.py DESCRIPTOR_SET OUT.yaml
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

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


VALIDATE_FILE = "buf/validate/validate.proto"
# buf.validate rule fields -> JSON Schema keywords, per kind of field.
_STRING_RULES = {"min_len": "minLength", "max_len": "maxLength", "pattern": "pattern"}
_STRING_FORMATS = {"email": "email", "uuid": "uuid", "uri": "uri", "hostname": "hostname", "ipv4": "ipv4"}
_NUMBER_KINDS = ("int32", "uint32", "sint32", "fixed32", "sfixed32", "float", "double")
_REPEATED_RULES = {"min_items": "minItems", "max_items": "maxItems", "unique": "uniqueItems"}
_MAP_RULES = {"min_pairs": "minProperties", "max_pairs": "maxProperties"}
# A message rule (buf.validate.message cel) that at least one of some fields is set, written as
# `size(this.a) > 0 || size(this.b) > 0`.
_ANY_OF_TERM = re.compile(r"size\(this\.(\w+)\) > 0")


class _Rules:
    """Reads the buf.validate rules of fields, when the descriptor set has validate.proto."""

    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self._extension: Any = None
        self._message_extension: Any = None
        if not any(f.name == VALIDATE_FILE for f in files):
            return
        pool = descriptor_pool.DescriptorPool()
        for file in files:  # protoc writes each file after the ones it imports
            pool.Add(file)
        self._options = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("google.protobuf.FieldOptions")
        )
        self._extension = pool.FindExtensionByName("buf.validate.field")
        self._message_options = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("google.protobuf.MessageOptions")
        )
        self._message_extension = pool.FindExtensionByName("buf.validate.message")

    def of(self, field: FieldProto) -> Any:
        """The field's buf.validate.FieldRules, or None."""
        if self._extension is None or not field.HasField("options"):
            return None
        options = self._options.FromString(field.options.SerializeToString())
        return options.Extensions[self._extension] if options.HasExtension(self._extension) else None

    def one_of_required(self, message: descriptor_pb2.DescriptorProto) -> list[list[str]]:
        """The message's rules that exactly one of some fields is set (buf.validate.message oneof)."""
        if self._extension is None or not message.HasField("options"):
            return []
        options = self._message_options.FromString(message.options.SerializeToString())
        if not options.HasExtension(self._message_extension):
            return []
        rules = options.Extensions[self._message_extension]
        return [list(rule.fields) for rule in rules.oneof if rule.required]

    def any_of_required(self, message: descriptor_pb2.DescriptorProto) -> list[list[str]]:
        """The message's rules that at least one of some fields is set (buf.validate.message cel
        `size(this.a) > 0 || size(this.b) > 0`); any other CEL rule cannot be described."""
        if self._extension is None or not message.HasField("options"):
            return []
        options = self._message_options.FromString(message.options.SerializeToString())
        if not options.HasExtension(self._message_extension):
            return []
        found = []
        for rule in options.Extensions[self._message_extension].cel:
            terms = rule.expression.split(" || ")
            if not all(_ANY_OF_TERM.fullmatch(term) for term in terms):
                raise SystemExit(f"{message.name}: the CEL rule {rule.id!r} cannot be described in OpenAPI")
            found.append([term.removeprefix("size(this.").removesuffix(") > 0") for term in terms])
        return found

    @staticmethod
    def required(rules: Any) -> bool:
        return rules is not None and rules.required

    @staticmethod
    def _collection(schema: dict[str, Any], kind: str, typed: Any) -> dict[str, Any]:
        """A list's or a map's schema with its own rules and those of its items, keys and values."""
        if kind == "repeated":
            constrained = {**schema, **_keywords(typed, _REPEATED_RULES)}
            if typed.HasField("items"):
                constrained["items"] = _Rules.constrain(schema["items"], typed.items)
            return constrained
        constrained = {**schema, **_keywords(typed, _MAP_RULES)}
        if typed.HasField("keys"):
            constrained["propertyNames"] = _Rules.constrain({"type": "string"}, typed.keys)
        if typed.HasField("values"):
            values = schema["additionalProperties"]
            constrained["additionalProperties"] = _Rules.constrain(values, typed.values)
        return constrained

    @staticmethod
    def constrain(schema: dict[str, Any], rules: Any) -> dict[str, Any]:
        """`schema` with the constraints of `rules` (a FieldRules, or the rules of a list's items)."""
        kind = None if rules is None else rules.WhichOneof("type")
        if kind is None:
            return schema
        typed = getattr(rules, kind)
        if kind in ("map", "repeated"):
            return _Rules._collection(schema, kind, typed)
        if kind == "string":
            constrained = {**schema, **_string_keywords(typed)}
        elif kind in _NUMBER_KINDS:
            constrained = {**schema, **_number_keywords(typed)}
        else:
            return schema
        ignore = rules.DESCRIPTOR.fields_by_name["ignore"].enum_type.values_by_number[rules.ignore].name
        if ignore == "IGNORE_IF_ZERO_VALUE":
            # The zero value is not checked: "" passes the length rules and any pattern.
            constrained.pop("minLength", None)
            if "pattern" in constrained:
                constrained["pattern"] = f"^$|{constrained['pattern']}"
            if "format" in constrained:
                constrained["anyOf"] = [{"maxLength": 0}, {"format": constrained.pop("format")}]
            if "enum" in constrained:
                constrained["enum"] = ["", *constrained["enum"]]
        return constrained


def _keywords(rules: Any, names: dict[str, str]) -> dict[str, Any]:
    return {keyword: getattr(rules, name) for name, keyword in names.items() if rules.HasField(name)}


def _ascii_pattern(pattern: str) -> str:
    """`pattern` with each character outside printable ASCII written as a \\uXXXX escape (the same
    regular expression for ECMA and Python, and readable in the YAML)."""
    return "".join(ch if " " <= ch <= "~" or ord(ch) > 0xFFFF else f"\\u{ord(ch):04X}" for ch in pattern)


def _string_keywords(rules: Any) -> dict[str, Any]:
    found = _keywords(rules, _STRING_RULES)
    if "pattern" in found:
        found["pattern"] = _ascii_pattern(found["pattern"])
    if rules.HasField("len"):
        found["minLength"] = found["maxLength"] = rules.len
    if (well_known := rules.WhichOneof("well_known")) in _STRING_FORMATS:
        found["format"] = _STRING_FORMATS[well_known]
    if allowed := list(getattr(rules, "in")):
        found["enum"] = allowed
    return found


def _number_keywords(rules: Any) -> dict[str, Any]:
    names = {"gte": "minimum", "gt": "exclusiveMinimum", "lte": "maximum", "lt": "exclusiveMaximum"}
    return _keywords(rules, names)


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
        self._rules = _Rules(files)
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
                mapped: dict[str, Any] = {
                    "type": "object",
                    "additionalProperties": self._field_schema(entry.field[1]),
                }
                return self._rules.constrain(mapped, self._rules.of(field))
            single = self.ref(field.type_name.lstrip("."))
        elif field.type == FieldProto.TYPE_ENUM:
            enum = self._enums[field.type_name.lstrip(".")]
            single = {"type": "string", "enum": [v.name for v in enum.value]}
        else:
            single = dict(_SCALARS[field.type])
        whole = {"type": "array", "items": single} if field.label == FieldProto.LABEL_REPEATED else single
        rules = self._rules.of(field)
        whole = self._rules.constrain(whole, rules)
        if _Rules.required(rules):
            # Required is not the zero value: an empty string or list counts as left out.
            length = "minItems" if whole.get("type") == "array" else "minLength"
            if whole.get("type") in ("array", "string") and not whole.get(length):
                whole = {**whole, length: 1}
        return whole

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
        required = [f.name for f in message.field if f.name in properties and self._required(f)]
        if required:
            whole["required"] = required
        for fields in self._rules.one_of_required(message):
            # Exactly one of them is set: a proto3 string is set when it is not empty.
            if any(f.type != FieldProto.TYPE_STRING for f in message.field if f.name in fields):
                raise SystemExit(f"{name}: a oneof rule over fields other than strings is not described yet")
            whole["oneOf"] = [
                {"required": [f], "properties": {f: {"type": "string", "minLength": 1}}} for f in fields
            ]
        for fields in self._rules.any_of_required(message):
            # At least one of them is set: a string or list is set when it is not empty.
            repeated = {f.name for f in message.field if f.label == FieldProto.LABEL_REPEATED}
            whole["anyOf"] = [
                {"required": [f], "properties": {f: {"minItems" if f in repeated else "minLength": 1}}}
                for f in fields
            ]
        if description := self._comment(name):
            whole = {"description": description, **whole}
        return whole

    def _required(self, field: FieldProto) -> bool:
        return _Rules.required(self._rules.of(field))

    def body_schema(self, name: str, body: str, path_params: list[str]) -> dict[str, Any]:
        if body == "*":
            # The transcoder ignores a property the request does not have, but refuses a nameless one.
            return {
                **_nullable(self._message_schema(name, leave_out=frozenset(path_params))),
                "propertyNames": {"minLength": 1},
            }
        field = next(f for f in self._messages[name].field if f.name == body)
        return self._field_schema(field)

    def query_params(self, name: str, bound: set[str]) -> list[dict[str, Any]]:
        """Every top-level scalar, enum or repeated scalar field not in the path or body."""
        params = []
        for index, field in enumerate(self._messages[name].field):
            if field.name in bound or field.type == FieldProto.TYPE_MESSAGE:
                continue
            param: dict[str, Any] = {"name": field.name, "in": "query", "schema": self._field_schema(field)}
            if self._required(field):
                param["required"] = True
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


def _nullable(message: dict[str, Any]) -> dict[str, Any]:
    """A request message's schema in which a field that may be left out may also be null: proto3's
    JSON mapping reads null as the field's default value, as if it were not sent."""
    required = set(message.get("required", ()))
    properties = {
        name: {**schema, "type": [schema["type"], "null"]}
        if name not in required and isinstance(schema.get("type"), str)
        else schema
        for name, schema in message["properties"].items()
    }
    return {**message, "properties": properties}


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
        "openapi": "3.1.0",
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
