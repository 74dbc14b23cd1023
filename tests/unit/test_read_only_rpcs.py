"""Which RPCs are read-only is said once, in the protos (`option idempotency_level =
NO_SIDE_EFFECTS`), and the channels between services retry exactly those."""

from __future__ import annotations

import json

from meshkit.runtime import read_only_methods, retry_service_config
from social.peers import NotificationsPeer, TweetsPeer, UsersPeer
from tests.helpers import WRITE_VERBS, rpc_routes
from tweetmesh.fanout.v1 import fanout_service_pb2 as fanout_pb
from tweetmesh.media.v1 import media_service_pb2 as media_pb
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb

SERVICES = [
    UsersPeer.SERVICE,
    TweetsPeer.SERVICE,
    NotificationsPeer.SERVICE,
    timeline_pb.DESCRIPTOR.services_by_name["TimelineService"],
    fanout_pb.DESCRIPTOR.services_by_name["FanoutService"],
    media_pb.DESCRIPTOR.services_by_name["MediaService"],
]


def test_reads_are_marked_read_only_and_writes_are_not() -> None:
    read_only = {f"/{s.full_name}/{m}" for s in SERVICES for m in read_only_methods(s)}
    routes = rpc_routes()
    assert {path for path, verb in routes.items() if verb == "get"} <= read_only
    assert not {path for path, verb in routes.items() if verb in WRITE_VERBS} & read_only
    # The internal reads other services call are read-only too.
    assert {"BatchGetUsers", "ListFollowerIds", "AuthenticateToken"} <= set(
        read_only_methods(UsersPeer.SERVICE)
    )
    assert {"BatchGetTweets", "ListTweetIdsByAuthors"} <= set(read_only_methods(TweetsPeer.SERVICE))
    assert {"BatchGetNotifications", "ListNotificationsAfter"} <= set(
        read_only_methods(NotificationsPeer.SERVICE)
    )


def test_a_channel_retries_the_read_only_methods_of_its_service_only() -> None:
    config = json.loads(retry_service_config(UsersPeer.SERVICE))
    (method_config,) = config["methodConfig"]
    named = {(n["service"], n["method"]) for n in method_config["name"]}
    assert named == {(UsersPeer.SERVICE.full_name, m) for m in read_only_methods(UsersPeer.SERVICE)}
    assert (UsersPeer.SERVICE.full_name, "FollowUser") not in named
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
