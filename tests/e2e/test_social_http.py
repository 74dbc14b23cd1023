"""The social API as plain HTTP/JSON through Envoy: every route of it, its errors as HTTP
statuses with JSON bodies, and the global stream as NDJSON."""

from __future__ import annotations

import http.client
import json
import secrets
from typing import Any

from tests.e2e.test_envoy_http import UNKNOWN_ID, Http
from tests.helpers import eventually


def test_delete_replies_retweets_and_likes_over_http(api: Http) -> None:
    author, author_token = api.sign_up("hauthor")
    fan, fan_token = api.sign_up("hfan")
    root = api("POST", "/v1/tweets", {"text": "root over http"}, token=author_token).json()["tweet"]
    reply = api(
        "POST", "/v1/tweets", {"text": "reply", "reply_to_tweet_id": root["tweet_id"]}, token=fan_token
    ).json()["tweet"]
    replies = api("GET", f"/v1/tweets/{root['tweet_id']}/replies?page_size=5").json()
    assert [t["tweet_id"] for t in replies["tweets"]] == [reply["tweet_id"]]

    liked = api("POST", f"/v1/tweets/{root['tweet_id']}:like", {}, token=fan_token)
    assert liked.status == 200 and liked.json()["tweet"]["like_count"] == "1"
    assert (
        api("POST", f"/v1/tweets/{root['tweet_id']}:like", {}, token=fan_token).json()["tweet"]["like_count"]
        == "1"
    )
    likers = api("GET", f"/v1/tweets/{root['tweet_id']}/likes").json()["users"]
    assert [u["user_id"] for u in likers] == [fan["user_id"]]
    liked_tweets = api("GET", f"/v1/users/{fan['user_id']}/likes").json()["tweets"]
    assert [t["tweet_id"] for t in liked_tweets] == [root["tweet_id"]]
    unliked = api("POST", f"/v1/tweets/{root['tweet_id']}:unlike", {}, token=fan_token)
    assert unliked.json()["tweet"]["like_count"] == "0"

    retweet = api("POST", f"/v1/tweets/{root['tweet_id']}:retweet", {}, token=fan_token).json()["tweet"]
    assert retweet["retweeted_tweet"]["tweet_id"] == root["tweet_id"]
    undone = api("POST", f"/v1/tweets/{root['tweet_id']}:unretweet", {}, token=fan_token).json()["tweet"]
    assert undone["retweet_count"] == "0"

    forbidden = api("DELETE", f"/v1/tweets/{root['tweet_id']}", token=fan_token)
    assert forbidden.status == 403 and forbidden.json()["code"] == 7
    assert api("DELETE", f"/v1/tweets/{root['tweet_id']}", token=author_token).status == 200
    assert api("GET", f"/v1/tweets/{root['tweet_id']}").status == 404
    kept = api("GET", f"/v1/tweets/{reply['tweet_id']}").json()["tweet"]
    assert kept["reply_to_deleted"] is True
    assert kept["reply_to_author_id"] == author["user_id"]


def test_mentions_hashtags_and_search_over_http(api: Http) -> None:
    target, _ = api.sign_up("htarget")
    _, token = api.sign_up("hposter")
    tag = "t" + secrets.token_hex(5)
    posted = api(
        "POST", "/v1/tweets", {"text": f"hello @{target['handle']} #{tag} rhinoceros"}, token=token
    ).json()["tweet"]
    assert posted["mentions"][0]["user_id"] == target["user_id"]
    assert posted["hashtags"] == [tag]
    mentions = api("GET", f"/v1/users/{target['user_id']}/mentions").json()["tweets"]
    assert [t["tweet_id"] for t in mentions] == [posted["tweet_id"]]
    tagged = api("GET", f"/v1/hashtags/{tag.upper()}/tweets").json()["tweets"]
    assert [t["tweet_id"] for t in tagged] == [posted["tweet_id"]]
    found = api("GET", f"/v1/tweets:search?query=%23{tag}").json()["tweets"]
    assert [t["tweet_id"] for t in found] == [posted["tweet_id"]]
    phrase = api("GET", f"/v1/tweets:search?query=%22{tag}%20rhinoceros%22").json()["tweets"]
    assert [t["tweet_id"] for t in phrase] == [posted["tweet_id"]]

    empty = api("GET", "/v1/tweets:search?query=")
    assert empty.status == 400 and "query" in empty.json()["message"]
    oversized = api("GET", "/v1/tweets:search?query=" + "x" * 201)
    assert oversized.status == 400
    api("POST", "/v1/tweets", {"text": f"again #{tag}"}, token=token)
    next_token = api("GET", f"/v1/tweets:search?query={tag}&page_size=1").json()["next_page_token"]
    assert next_token
    reused = api("GET", f"/v1/hashtags/{tag}/tweets?page_token={next_token}")
    assert reused.status == 400 and "other arguments" in reused.json()["message"]


def test_profiles_and_user_search_over_http(api: Http) -> None:
    user, token = api.sign_up("hprofile")
    _, other_token = api.sign_up("hother")
    patched = api("PATCH", f"/v1/users/{user['user_id']}", {"bio": "writes tests"}, token=token)
    assert patched.status == 200, patched.body
    assert patched.json()["user"]["bio"] == "writes tests"
    assert patched.json()["user"]["display_name"] == user["display_name"]
    denied = api("PATCH", f"/v1/users/{user['user_id']}", {"bio": "nope"}, token=other_token)
    assert denied.status == 403
    assert api("PATCH", f"/v1/users/{UNKNOWN_ID}", {"bio": "x"}, token=token).status == 404
    found = api("GET", f"/v1/users:search?query={user['handle'][:-2]}").json()["users"]
    assert user["user_id"] in [u["user_id"] for u in found]
    assert api("GET", "/v1/users:search?query=").status == 400


def test_global_timeline_and_its_ndjson_stream_over_http(api: Http, mesh: Any) -> None:
    _, token = api.sign_up("hglobal")
    conn = http.client.HTTPConnection("127.0.0.1", mesh.ports.envoy, timeout=10)
    conn.request("GET", "/v1/timelines/global:stream")
    response = conn.getresponse()
    assert response.status == 200
    try:
        posted = api("POST", "/v1/tweets", {"text": "for the world"}, token=token).json()["tweet"]

        def next_tweet_id() -> str | None:
            line = response.readline()
            event = json.loads(line)
            return event.get("tweet", {}).get("tweet_id")  # type: ignore[no-any-return]

        eventually(lambda: next_tweet_id() == posted["tweet_id"])
    finally:
        conn.close()
    latest = api("GET", "/v1/timelines/global?page_size=50").json()["tweets"]
    assert posted["tweet_id"] in [t["tweet_id"] for t in latest]
