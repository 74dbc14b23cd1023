"""The public API as plain HTTP/JSON through Envoy: the story, the stream as NDJSON, the errors."""

from __future__ import annotations

import http.client
import json
import secrets
import time
from typing import Any

import pytest

from tests.helpers import PASSWORD, HttpResponse, eventually, http_call

UNKNOWN_ID = "1999999999999999999"


class Http:
    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(self, method: str, path: str, body: Any = None, token: str | None = None) -> HttpResponse:
        return http_call(self.port, method, path, body, token)

    def sign_up(self, prefix: str) -> tuple[dict[str, Any], str]:
        handle = f"{prefix}_{secrets.token_hex(3)}"
        created = self(
            "POST", "/v1/users", {"handle": handle, "display_name": prefix.title(), "password": PASSWORD}
        )
        assert created.status == 200, created.body
        login = self("POST", "/v1/sessions", {"handle": handle, "password": PASSWORD})
        assert login.status == 200, login.body
        return login.json()["user"], login.json()["token"]


def test_the_whole_story_over_http(api: Http) -> None:
    alice, alice_token = api.sign_up("alice")
    bob, bob_token = api.sign_up("bob")
    assert api("GET", f"/v1/handles/{bob['handle']}").json()["user"]["user_id"] == bob["user_id"]

    followed = api("POST", f"/v1/users/{bob['user_id']}:follow", {}, token=alice_token)
    assert followed.status == 200
    assert followed.json()["user"]["followers_count"] == "1"
    followers = api("GET", f"/v1/users/{bob['user_id']}/followers?page_size=10").json()
    assert [u["user_id"] for u in followers["users"]] == [alice["user_id"]]
    following = api("GET", f"/v1/users/{alice['user_id']}/following").json()
    assert [u["user_id"] for u in following["users"]] == [bob["user_id"]]

    posted = api("POST", "/v1/tweets", {"text": "hello over HTTP", "request_id": "r1"}, token=bob_token)
    assert posted.status == 200, posted.body
    tweet = posted.json()["tweet"]
    assert tweet["author"]["handle"] == bob["handle"]
    assert api("GET", f"/v1/tweets/{tweet['tweet_id']}").json()["tweet"]["text"] == "hello over HTTP"
    listed = api("GET", f"/v1/users/{bob['user_id']}/tweets").json()
    assert [t["tweet_id"] for t in listed["tweets"]] == [tweet["tweet_id"]]

    home = eventually(lambda: api("GET", "/v1/timelines/home?page_size=5", token=alice_token).json())
    assert [t["tweet_id"] for t in home["tweets"]] == [tweet["tweet_id"]]
    assert home["next_page_token"] == ""

    assert api("DELETE", "/v1/sessions/current", token=alice_token).status == 200
    assert api("GET", "/v1/timelines/home", token=alice_token).status == 401


def test_home_stream_is_newline_delimited_json_with_live_tweets(api: Http) -> None:
    _viewer, viewer_token = api.sign_up("ndjson")
    author, author_token = api.sign_up("poster")
    api("POST", f"/v1/users/{author['user_id']}:follow", {}, token=viewer_token)
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.request("GET", "/v1/timelines/home:stream", headers={"authorization": f"Bearer {viewer_token}"})
    response = conn.getresponse()
    try:
        assert response.status == 200
        first = json.loads(response.readline())
        assert "heartbeat" in first
        posted = api("POST", "/v1/tweets", {"text": "streamed"}, token=author_token).json()["tweet"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            event = json.loads(response.readline())
            if "tweet" in event:
                assert event["tweet"]["tweet_id"] == posted["tweet_id"]
                break
        else:
            pytest.fail("the tweet did not arrive on the NDJSON stream")
    finally:
        conn.close()


ERROR_CASES = [
    ("empty tweet", "POST", "/v1/tweets", {"text": ""}, True, 400, "text"),
    ("281-character tweet", "POST", "/v1/tweets", {"text": "y" * 281}, True, 400, "text"),
    ("bad handle", "POST", "/v1/users", {"handle": "bad handle", "password": PASSWORD}, False, 400, "handle"),
    (
        "short password",
        "POST",
        "/v1/users",
        {"handle": "okhandle", "password": "1234567"},
        False,
        400,
        "password",
    ),
    ("unknown user", "GET", f"/v1/users/{UNKNOWN_ID}", None, False, 404, "user_id"),
    ("unknown tweet", "GET", f"/v1/tweets/{UNKNOWN_ID}", None, False, 404, "tweet_id"),
    ("no token", "POST", "/v1/tweets", {"text": "anonymous"}, False, 401, "authorization"),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "authed", "status", "field"),
    ERROR_CASES,
    ids=[c[0] for c in ERROR_CASES],
)
def test_errors_map_to_http_status_with_a_json_body(
    api: Http, name: str, method: str, path: str, body: Any, authed: bool, status: int, field: str
) -> None:
    token = api.sign_up("err")[1] if authed else None
    response = api(method, path, body, token=token)
    assert response.status == status, response.body
    payload = response.json()
    assert field in payload["message"]
    assert payload["code"] > 0
    assert any(d["@type"].endswith("ErrorInfo") for d in payload["details"])


def test_duplicate_handle_is_409_and_bad_token_401_and_self_follow_400(api: Http) -> None:
    user, token = api.sign_up("dupe")
    again = api("POST", "/v1/users", {"handle": user["handle"].upper(), "password": PASSWORD})
    assert again.status == 409
    assert "handle" in again.json()["message"]
    assert api("POST", "/v1/tweets", {"text": "x"}, token="tm_" + "A" * 43).status == 401
    self_follow = api("POST", f"/v1/users/{user['user_id']}:follow", {}, token=token)
    assert self_follow.status == 400
    assert "user_id" in self_follow.json()["message"]
    assert api("GET", f"/v1/users/{user['user_id']}").json()["user"]["following_count"] == "0"


def test_unknown_paths_query_parameters_and_bad_json_are_refused_as_json(api: Http) -> None:
    for path, status in [("/v1/nothing-here", 404), ("/v1/users/1?bogus=1", 400)]:
        response = api("GET", path)
        assert response.status == status
        assert response.json()["code"] in (3, 5)
    broken = http_call(api.port, "POST", "/v1/users", raw=b'{"handle": ')
    assert broken.status == 400
    assert broken.json()["code"] == 3


def test_internal_rpcs_and_the_fanout_admin_api_are_not_routed(api: Http) -> None:
    for path in [
        "/tweetmesh.users.v1.UserService/BatchGetUsers",
        "/tweetmesh.users.v1.UserService/AuthenticateToken",
        "/tweetmesh.tweets.v1.TweetService/BatchGetTweets",
        "/tweetmesh.fanout.v1.FanoutService/GetFanoutStats",
    ]:
        response = http_call(api.port, "POST", path, raw=b"\x00\x00\x00\x00\x00")
        assert response.status == 404, path
