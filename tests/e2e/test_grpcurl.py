"""The mesh as a grpcurl user sees it: reflection on every service, the story through Envoy."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack import binaries
from tests.helpers import PASSWORD, eventually


def grpcurl(address: str, *args: str, data: Any = None, token: str | None = None) -> Any:
    command = [str(binaries.grpcurl()), "-plaintext", "-max-time", "10"]
    if token:
        command += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    done = subprocess.run([*command, address, *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("service", "name"),
    [
        ("users", "tweetmesh.users.v1.UserService"),
        ("tweets", "tweetmesh.tweets.v1.TweetService"),
        ("fanout", "tweetmesh.fanout.v1.FanoutService"),
        ("timeline", "tweetmesh.timeline.v1.TimelineService"),
    ],
)
def test_every_service_lists_itself_and_health_through_reflection(mesh: Any, service: str, name: str) -> None:
    address = f"127.0.0.1:{getattr(mesh.ports, service)}"
    listed = grpcurl(address, "list").split()
    assert name in listed
    assert "grpc.health.v1.Health" in listed
    health = json.loads(grpcurl(address, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"


def test_the_story_with_grpcurl_and_reflection(mesh: Any) -> None:
    users = f"127.0.0.1:{mesh.ports.users}"
    tweets = f"127.0.0.1:{mesh.ports.tweets}"
    timeline = f"127.0.0.1:{mesh.ports.timeline}"
    handles = [f"gc_{secrets.token_hex(3)}" for _ in range(2)]
    tokens = {}
    ids = {}
    for handle in handles:
        created = json.loads(
            grpcurl(
                users,
                "tweetmesh.users.v1.UserService/CreateUser",
                data={"handle": handle, "password": PASSWORD},
            )
        )
        ids[handle] = created["user"]["user_id"]
        login = json.loads(
            grpcurl(
                users, "tweetmesh.users.v1.UserService/Login", data={"handle": handle, "password": PASSWORD}
            )
        )
        tokens[handle] = login["token"]
    reader, writer = handles
    grpcurl(
        users,
        "tweetmesh.users.v1.UserService/FollowUser",
        data={"user_id": ids[writer]},
        token=tokens[reader],
    )
    tweet = json.loads(
        grpcurl(
            tweets,
            "tweetmesh.tweets.v1.TweetService/CreateTweet",
            data={"text": "via grpcurl"},
            token=tokens[writer],
        )
    )["tweet"]

    def home() -> list[str]:
        out = json.loads(
            grpcurl(timeline, "tweetmesh.timeline.v1.TimelineService/GetHomeTimeline", token=tokens[reader])
        )
        return [t["tweet_id"] for t in out.get("tweets", [])]

    eventually(lambda: home() == [tweet["tweet_id"]])


def test_native_grpc_through_envoy(mesh: Any) -> None:
    """Envoy's port takes native gRPC too; it has no reflection, so grpcurl reads the descriptor set."""
    command = [
        str(binaries.grpcurl()),
        "-plaintext",
        *("-protoset", str(Path(__file__).resolve().parents[2] / "gen" / "tweetmesh.pb")),
        *("-d", json.dumps({"handle": "nobody_here_x"})),
        f"127.0.0.1:{mesh.ports.envoy}",
        "tweetmesh.users.v1.UserService/GetUserByHandle",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "NotFound" in done.stderr + done.stdout
    assert "handle" in done.stderr + done.stdout


def test_the_social_api_with_grpcurl(mesh: Any) -> None:
    users = f"127.0.0.1:{mesh.ports.users}"
    tweets = f"127.0.0.1:{mesh.ports.tweets}"
    handle = f"gs_{secrets.token_hex(3)}"
    grpcurl(users, "tweetmesh.users.v1.UserService/CreateUser", data={"handle": handle, "password": PASSWORD})
    login = json.loads(
        grpcurl(users, "tweetmesh.users.v1.UserService/Login", data={"handle": handle, "password": PASSWORD})
    )
    token = login["token"]
    word = "g" + secrets.token_hex(5)
    posted = json.loads(
        grpcurl(
            tweets, "tweetmesh.tweets.v1.TweetService/CreateTweet", data={"text": f"#{word}"}, token=token
        )
    )["tweet"]
    liked = json.loads(
        grpcurl(
            tweets,
            "tweetmesh.tweets.v1.TweetService/LikeTweet",
            data={"tweet_id": posted["tweet_id"]},
            token=token,
        )
    )["tweet"]
    assert liked["like_count"] == "1"
    found = json.loads(
        grpcurl(tweets, "tweetmesh.tweets.v1.TweetService/SearchTweets", data={"query": f"#{word}"})
    )
    assert [t["tweet_id"] for t in found["tweets"]] == [posted["tweet_id"]]
    grpcurl(
        tweets,
        "tweetmesh.tweets.v1.TweetService/DeleteTweet",
        data={"tweet_id": posted["tweet_id"]},
        token=token,
    )
    tagged = json.loads(
        grpcurl(tweets, "tweetmesh.tweets.v1.TweetService/ListHashtagTweets", data={"tag": word})
    )
    assert tagged.get("tweets", []) == []
    profile = json.loads(
        grpcurl(
            users,
            "tweetmesh.users.v1.UserService/UpdateUser",
            data={"user_id": login["user"]["user_id"], "bio": "via grpcurl"},
            token=token,
        )
    )
    assert profile["user"]["bio"] == "via grpcurl"
