"""docs/openapi.yaml is valid OpenAPI 3, covers every public route of the protos, and describes what
Envoy really answers: each response below is checked against the spec's schema for its route, with
undocumented fields refused."""

from __future__ import annotations

import base64
import copy
import http.client
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from devstack.mesh import Mesh
from devstack.smtp import read_mails
from tests.helpers import PASSWORD, http_call
from tests.media_samples import encode, picture
from tweetmesh.media.v1 import media_service_pb2
from tweetmesh.notifications.v1 import notifications_service_pb2
from tweetmesh.timeline.v1 import timeline_service_pb2
from tweetmesh.tweets.v1 import tweets_service_pb2
from tweetmesh.users.v1 import users_service_pb2

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def closed(schema: Any) -> Any:
    """The schema with every object closed to undocumented properties."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


class Checker:
    def __init__(self, spec: dict[str, Any], port: int) -> None:
        self._spec = spec
        self._components = closed(copy.deepcopy(spec["components"]))
        self._port = port
        self.checked: set[tuple[str, str]] = set()

    def _route(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        bare = path.split("?", maxsplit=1)[0]
        for template, operations in self._spec["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/:]+", re.escape(template)) + "$"
            if re.match(pattern, bare) and method.lower() in operations:
                return template, operations[method.lower()]
        raise AssertionError(f"{method} {bare} is not in docs/openapi.yaml")

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        raw: tuple[bytes, str] | None = None,
    ) -> Any:
        """One call checked against the spec; `raw` sends bytes of a content type instead of JSON."""
        if raw is None:
            response = http_call(self._port, method, path, body, token)
        else:
            data, content_type = raw
            response = http_call(
                self._port, method, path, raw=data, token=token, headers={"content-type": content_type}
            )
        template, operation = self._route(method, path)
        if raw is not None:
            assert "*/*" in operation["requestBody"]["content"], template
        described = operation["responses"].get(str(response.status), operation["responses"]["default"])
        if "$ref" in described:
            described = self._spec["components"]["responses"][described["$ref"].rsplit("/", 1)[1]]
        if "*/*" in described["content"]:  # raw bytes: any type, not JSON
            assert not response.headers["content-type"].startswith("application/json"), template
        else:
            schema = described["content"]["application/json"]["schema"]
            OAS30Validator({**schema, "components": self._components}).validate(response.json())
        self.checked.add((method.lower(), template))
        return response

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """The JSON body of a call that must succeed."""
        response = self.call(method, path, body, token)
        assert response.status == 200, (method, path, response.body)
        return response.json()


def test_the_spec_is_valid_openapi_3(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.")


def test_every_public_rpc_has_its_route_and_no_internal_one_does(spec: dict[str, Any]) -> None:
    expected = set()
    internal = set()
    for module in (
        users_service_pb2,
        tweets_service_pb2,
        timeline_service_pb2,
        media_service_pb2,
        notifications_service_pb2,
    ):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if options.HasExtension(annotations_pb2.http):
                    rule = options.Extensions[annotations_pb2.http]
                    verb = rule.WhichOneof("pattern")
                    path = re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", getattr(rule, verb))
                    expected.add((verb, path, f"{service.name}_{method.name}"))
                else:
                    internal.add(f"{service.name}_{method.name}")
    documented = {
        (verb, path, operation["operationId"])
        for path, operations in spec["paths"].items()
        for verb, operation in operations.items()
    }
    assert documented == expected
    assert internal.isdisjoint({op for _, _, op in documented})


def mailed_token(mesh: Mesh, address: str, count: int) -> str:
    """The token in the link of the `count`th mail to `address`."""
    assert mesh.mail_dir is not None
    body = read_mails(mesh.mail_dir, address, at_least=count, timeout=30)[count - 1].get_body(("plain",))
    assert body is not None
    return str(body.get_content()).split("?token=")[1].split()[0]


def walk_every_route(api: Checker, mesh: Mesh) -> tuple[str, str, str, str]:
    """Calls every non-streaming route once, successfully; returns (handle, token, other's id, token)."""
    handle, other = f"spec_{secrets.token_hex(3)}", f"spec2_{secrets.token_hex(3)}"
    email = f"{handle}@example.com"
    ok = api.ok

    user = ok("POST", "/v1/users", {"handle": handle, "password": PASSWORD, "email": email})["user"]
    token = ok("POST", "/v1/sessions", {"handle": handle, "password": PASSWORD})["token"]
    ok("POST", f"/v1/users/{user['user_id']}:sendVerificationEmail", {}, token)
    ok("POST", "/v1/users:verifyEmail", {"token": mailed_token(mesh, email, 2)})
    ok("POST", "/v1/users:requestPasswordReset", {"email": email})
    followee = ok("POST", "/v1/users", {"handle": other, "password": PASSWORD})["user"]
    other_token = ok("POST", "/v1/sessions", {"handle": other, "password": PASSWORD})["token"]
    uid, fid = user["user_id"], followee["user_id"]
    ok("GET", f"/v1/users/{uid}")
    ok("GET", f"/v1/handles/{handle}")
    ok("PATCH", f"/v1/users/{uid}", {"display_name": "Spec", "bio": "described by the spec"}, token)
    ok("GET", f"/v1/users:search?query={handle}")
    ok("POST", f"/v1/users/{fid}:follow", {}, token)
    ok("GET", f"/v1/users/{fid}/followers?page_size=5")
    ok("GET", f"/v1/users/{uid}/following")
    text = f"described by @{handle} #spec{secrets.token_hex(2)}"
    tweet = ok("POST", "/v1/tweets", {"text": text, "request_id": "spec-1"}, other_token)["tweet"]
    tid = tweet["tweet_id"]
    ok("POST", "/v1/tweets", {"text": "a reply", "reply_to_tweet_id": tid}, token)
    ok("GET", f"/v1/tweets/{tid}")
    ok("GET", f"/v1/tweets/{tid}/replies")
    walk_richer_tweets(api, token, tid)
    ok("POST", f"/v1/tweets/{tid}:like", {}, token)
    ok("GET", f"/v1/tweets/{tid}/likes")
    ok("GET", f"/v1/users/{uid}/likes")
    ok("POST", f"/v1/tweets/{tid}:unlike", {}, token)
    ok("POST", f"/v1/tweets/{tid}:retweet", {}, token)
    ok("POST", f"/v1/tweets/{tid}:unretweet", {}, token)
    ok("GET", f"/v1/users/{uid}/mentions")
    ok("GET", f"/v1/hashtags/{text.rsplit('#', 1)[1]}/tweets")
    ok("GET", "/v1/tweets:search?query=described")
    ok("GET", f"/v1/users/{fid}/tweets?page_size=5")
    ok("GET", "/v1/timelines/home?page_size=5", token=token)
    ok("GET", "/v1/timelines/global?page_size=5")
    ok("POST", f"/v1/users/{fid}:unfollow", {}, token)
    for verb in ("block", "unblock", "mute", "unmute"):
        ok("POST", f"/v1/users/{fid}:{verb}", {}, token)
    ok("GET", "/v1/blocks?page_size=5", token=token)
    ok("GET", "/v1/mutes", token=token)
    ok("GET", f"/v1/users/{uid}/suggestions?page_size=5", token=token)
    ok("GET", "/v1/notifications:unreadCount", token=token)
    listed = ok("GET", "/v1/notifications?page_size=5", token=token).get("groups", [])
    newest = listed[0]["latest_notification_id"] if listed else "1"
    ok("POST", "/v1/notifications:markRead", {"up_to_id": newest}, token)
    ok("DELETE", f"/v1/tweets/{tid}", token=other_token)
    delete_an_account(api, handle[:-1] + "x")
    return handle, walk_credential_routes(api, mesh, uid, email, token), fid, other_token


def delete_an_account(api: Checker, handle: str) -> None:
    """An account of its own, deleted with its password."""
    leaving = api.ok("POST", "/v1/users", {"handle": handle, "password": PASSWORD})["user"]
    token = api.ok("POST", "/v1/sessions", {"handle": handle, "password": PASSWORD})["token"]
    api.ok("DELETE", f"/v1/users/{leaving['user_id']}", {"password": PASSWORD}, token)


def walk_credential_routes(api: Checker, mesh: Mesh, uid: str, email: str, token: str) -> str:
    """Changes the password, resets it with the token mailed earlier, changes the email; the new token."""
    changed = {"old_password": PASSWORD, "new_password": f"{PASSWORD} again"}
    token = api.ok("POST", f"/v1/users/{uid}:changePassword", changed, token)["token"]
    reset = {"token": mailed_token(mesh, email, 3), "new_password": f"{PASSWORD} reset"}
    api.ok("POST", "/v1/users:resetPassword", reset)
    token = api.ok("POST", "/v1/sessions", {"email": email, "password": reset["new_password"]})["token"]
    new_email = {"email": f"new.{email}", "password": reset["new_password"]}
    api.ok("POST", f"/v1/users/{uid}:changeEmail", new_email, token)
    walk_media_routes(api, token)
    return str(token)


def walk_richer_tweets(api: Checker, token: str, tweet_id: str) -> None:
    """Quotes, the lists of them, conversations, bookmarks, trends, edits and their history."""

    def ok(method: str, path: str, body: Any = None) -> Any:
        response = api.call(method, path, body, token)
        assert response.status == 200, (method, path, response.body)
        return response.json()

    ok("POST", "/v1/tweets", {"text": "quoted in the spec", "quote_tweet_id": tweet_id})
    ok("GET", f"/v1/tweets/{tweet_id}/quotes")
    ok("GET", f"/v1/tweets/{tweet_id}/conversation")
    ok("POST", f"/v1/tweets/{tweet_id}:bookmark", {})
    ok("GET", "/v1/bookmarks")
    ok("POST", f"/v1/tweets/{tweet_id}:unbookmark", {})
    ok("GET", "/v1/trends?window=15m")
    mine = ok("POST", "/v1/tweets", {"text": "to be edited in the spec"})["tweet"]["tweet_id"]
    ok("PATCH", f"/v1/tweets/{mine}", {"text": "edited in the spec", "request_id": "spec-edit"})
    ok("GET", f"/v1/tweets/{mine}/history")


def walk_media_routes(api: Checker, token: str) -> None:
    """Uploads (raw bytes, and chunks as a JSON array) and the bytes served back."""
    photo = encode(picture(), "PNG")
    media = api.call("POST", "/v1/media", token=token, raw=(photo, "image/png"))
    assert media.status == 200, media.body
    media_id = media.json()["media"]["media_id"]
    chunks = [{"start": {"content_type": "image/png"}}, {"chunk": base64.b64encode(photo).decode()}]
    assert api.call("POST", "/v1/media:stream", chunks, token).status == 200
    for path in (f"/v1/media/{media_id}", f"/v1/media/{media_id}:thumbnail"):
        assert api.call("GET", path).status == 200


def test_envoy_answers_as_the_spec_says(mesh: Mesh, spec: dict[str, Any]) -> None:
    api = Checker(spec, mesh.ports.envoy)
    handle, token, fid, other_token = walk_every_route(api, mesh)

    # Errors: the google.rpc.Status body, from a service and from Envoy itself.
    assert api.call("POST", "/v1/tweets", {"text": ""}, token).status == 400
    assert api.call("GET", "/v1/timelines/home").status == 401
    assert api.call("PATCH", f"/v1/users/{fid}", {"display_name": "Not me"}, token).status == 403
    assert api.call("GET", "/v1/handles/nobody_at_all").status == 404
    assert api.call("POST", "/v1/users", {"handle": handle, "password": PASSWORD}).status == 409
    assert api.call("DELETE", "/v1/sessions/current", token=token).status == 200

    streams = {
        (verb, path)
        for path, ops in spec["paths"].items()
        for verb, op in ops.items()
        if verb == "get" and ":stream" in path
    }
    assert streams == {
        ("get", "/v1/timelines/home:stream"),
        ("get", "/v1/timelines/global:stream"),
        ("get", "/v1/notifications:stream"),
    }
    for _, path in streams:
        # The stream's content type is the one the spec gives.
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        connection = http.client.HTTPConnection("127.0.0.1", mesh.ports.envoy, timeout=15)
        try:
            connection.request("GET", path, headers={"authorization": f"Bearer {other_token}"})
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("content-type") in content
        finally:
            connection.close()

    every = {(verb, path) for path, operations in spec["paths"].items() for verb in operations}
    assert every - api.checked == streams
