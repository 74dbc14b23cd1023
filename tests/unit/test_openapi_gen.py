"""tools/openapi.py maps each proto shape to what Envoy's transcoder sends and accepts: 64-bit ints as
strings, enums as names, maps, repeated fields, well-known types, path and query parameters, a body
field, additional bindings, raw bytes (google.api.HttpBody) in and out, a client stream as a JSON
array, and internal RPCs left out; and each buf.validate rule to its schema constraint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import openapi  # noqa: E402

import gen  # noqa: E402  (tools/ is a folder of scripts)

SAMPLE = """
syntax = "proto3";
package tweetmesh.sample.v1;
import "buf/validate/validate.proto";
import "google/api/annotations.proto";
import "google/api/httpbody.proto";
import "google/protobuf/timestamp.proto";

// Things, for the test.
service ThingService {
  // Gets one thing.
  rpc GetThing(GetThingRequest) returns (Thing) {
    option (google.api.http) = {
      get: "/v1/things/{thing_id}"
      additional_bindings {get: "/v1/owners/{owner}/things/{thing_id}"}
    };
  }
  rpc UpdateThing(UpdateThingRequest) returns (Thing) {
    option (google.api.http) = {patch: "/v1/things/{thing.thing_id}" body: "thing"};
  }
  rpc InternalOnly(GetThingRequest) returns (Thing);
  rpc CreateRuled(RuledRequest) returns (Thing) {
    option (google.api.http) = {post: "/v1/ruled/{ruled_id}" body: "*"};
  }
  rpc PutPicture(PutPictureRequest) returns (Thing) {
    option (google.api.http) = {post: "/v1/pictures" body: "picture"};
  }
  rpc GetPicture(GetThingRequest) returns (stream GetPictureResponse) {
    option (google.api.http) = {get: "/v1/pictures/{thing_id}" response_body: "picture"};
  }
  rpc PutThings(stream Thing) returns (Thing) {
    option (google.api.http) = {post: "/v1/things:batch" body: "*"};
  }
}

message PutPictureRequest {
  google.api.HttpBody picture = 1;
}

message GetPictureResponse {
  google.api.HttpBody picture = 1;
}

enum Color {
  COLOR_UNSPECIFIED = 0;
  COLOR_RED = 1;
}

message Thing {
  string thing_id = 1;
  // How many, as a 64-bit integer.
  int64 count = 2;
  Color color = 3;
  map<string, int32> sizes = 4;
  repeated string tags = 5;
  google.protobuf.Timestamp create_time = 6;
  Thing parent = 7;
  oneof kind {
    bool solid = 8;
    double weight = 9;
  }
}

message GetThingRequest {
  string thing_id = 1;
  string owner = 2;
  // Default 20.
  int32 page_size = 3;
  repeated Color colors = 4;
  Thing filter = 5;
}

message RuledRequest {
  string ruled_id = 1 [(buf.validate.field).string.pattern = "^[0-9]+$"];
  string name = 2 [(buf.validate.field) = {required: true, string: {min_len: 2, max_len: 5}}];
  string needed = 10 [(buf.validate.field).required = true];
  string code = 3 [(buf.validate.field).string.len = 4];
  string email = 4 [(buf.validate.field).string.email = true];
  string optional_id = 5 [(buf.validate.field) = {
    string: {pattern: "^[0-9]+$", min_len: 3}
    ignore: IGNORE_IF_ZERO_VALUE
  }];
  string hidden = 6 [(buf.validate.field).string.pattern = "^[^\u200b]*$"];
  int32 size = 7 [(buf.validate.field).int32 = {gte: 0, lt: 100}];
  repeated string ids = 8 [(buf.validate.field).repeated = {
    max_items: 3
    unique: true
    items: {string: {max_len: 2}}
  }];
  string kind = 9 [(buf.validate.field).string = {in: ["a", "b"]}];
}

message UpdateThingRequest {
  Thing thing = 1;
  bool validate_only = 2;
}
"""


def sample_spec(tmp_path: Path) -> dict[str, Any]:
    protos = tmp_path / "protos"
    (protos / "tweetmesh" / "sample" / "v1").mkdir(parents=True)
    (protos / "tweetmesh" / "sample" / "v1" / "sample.proto").write_text(SAMPLE)
    gen.descriptor_set(tmp_path / "sample.pb", protos=protos)
    return openapi.build((tmp_path / "sample.pb").read_bytes())


def test_scalars_enums_maps_and_well_known_types(tmp_path: Path) -> None:
    spec = sample_spec(tmp_path)
    validate(spec)
    thing = spec["components"]["schemas"]["tweetmesh.sample.v1.Thing"]
    properties = thing["properties"]
    assert properties["count"] == {
        "description": "How many, as a 64-bit integer.",
        "type": "string",
        "format": "int64",
    }
    assert properties["color"] == {"type": "string", "enum": ["COLOR_UNSPECIFIED", "COLOR_RED"]}
    assert properties["sizes"] == {
        "type": "object",
        "additionalProperties": {"type": "integer", "format": "int32"},
    }
    assert properties["tags"] == {"type": "array", "items": {"type": "string"}}
    assert properties["create_time"] == {"$ref": "#/components/schemas/google.protobuf.Timestamp"}
    assert spec["components"]["schemas"]["google.protobuf.Timestamp"] == {
        "type": "string",
        "format": "date-time",
    }
    assert properties["parent"] == {"$ref": "#/components/schemas/tweetmesh.sample.v1.Thing"}  # recursive
    assert "one of `kind`" in properties["solid"]["description"]


def test_routes_parameters_bodies_and_internal_rpcs(tmp_path: Path) -> None:
    spec = sample_spec(tmp_path)
    paths = spec["paths"]
    assert set(paths) == {
        "/v1/things/{thing_id}",
        "/v1/owners/{owner}/things/{thing_id}",
        "/v1/things/{thing.thing_id}",
        "/v1/ruled/{ruled_id}",
        "/v1/pictures",
        "/v1/pictures/{thing_id}",
        "/v1/things:batch",
    }
    get = paths["/v1/things/{thing_id}"]["get"]
    assert get["operationId"] == "ThingService_GetThing"
    assert get["description"] == "Gets one thing."
    params = {(p["name"], p["in"]) for p in get["parameters"]}
    # Path parameter, then every other scalar or repeated scalar as a query parameter; messages are not.
    assert params == {("thing_id", "path"), ("owner", "query"), ("page_size", "query"), ("colors", "query")}
    bound = {
        p["name"]
        for p in paths["/v1/owners/{owner}/things/{thing_id}"]["get"]["parameters"]
        if p["in"] == "path"
    }
    assert bound == {"owner", "thing_id"}
    patch = paths["/v1/things/{thing.thing_id}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/tweetmesh.sample.v1.Thing"
    }
    assert [p["name"] for p in patch["parameters"] if p["in"] == "query"] == ["validate_only"]
    for operations in paths.values():
        for operation in operations.values():
            assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}
            assert operation["operationId"] != "ThingService_InternalOnly"


def test_validation_rules_become_schema_constraints(tmp_path: Path) -> None:
    spec = sample_spec(tmp_path)
    validate(spec)
    operation = spec["paths"]["/v1/ruled/{ruled_id}"]["post"]
    (path_param,) = operation["parameters"]
    assert path_param["schema"] == {"type": "string", "pattern": "^[0-9]+$"}
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["name", "needed"]
    # A required string is not empty: proto3 cannot tell an empty one from one left out.
    assert body["properties"]["needed"] == {"type": "string", "minLength": 1}
    assert body["propertyNames"] == {"minLength": 1}  # the transcoder refuses a nameless property
    properties = body["properties"]
    assert "ruled_id" not in properties
    assert properties["name"] == {"type": "string", "minLength": 2, "maxLength": 5}
    assert path_param["required"] is True
    # What may be left out may be null too (proto3 JSON reads null as not sent).
    assert properties["code"] == {"type": ["string", "null"], "minLength": 4, "maxLength": 4}
    assert properties["email"] == {"type": ["string", "null"], "format": "email"}
    # An empty value is not checked.
    assert properties["optional_id"] == {"type": ["string", "null"], "pattern": "^$|^[0-9]+$"}
    # Characters outside printable ASCII are escaped, the same expression in ECMA and Python.
    assert properties["hidden"] == {"type": ["string", "null"], "pattern": "^[^\\u200B]*$"}
    assert properties["size"] == {
        "type": ["integer", "null"],
        "format": "int32",
        "minimum": 0,
        "exclusiveMaximum": 100,
    }
    assert properties["ids"] == {
        "type": ["array", "null"],
        "items": {"type": "string", "maxLength": 2},
        "maxItems": 3,
        "uniqueItems": True,
    }
    assert properties["kind"] == {"type": ["string", "null"], "enum": ["a", "b"]}


def test_raw_bytes_in_and_out_and_a_client_stream_as_an_array(tmp_path: Path) -> None:
    spec = sample_spec(tmp_path)
    validate(spec)
    raw = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    paths = spec["paths"]
    assert paths["/v1/pictures"]["post"]["requestBody"]["content"] == raw
    assert paths["/v1/pictures/{thing_id}"]["get"]["responses"]["200"]["content"] == raw
    batch = paths["/v1/things:batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch["type"] == "array"
    assert "google.api.HttpBody" not in spec["components"]["schemas"]
