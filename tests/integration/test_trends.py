"""Trends: hashtags ranked by how far their use rose over the window against their own baseline,
counted from the tweets' events within seconds (the test mesh's trends minute lasts 0.1 s, so its
"1h" window is 6 s and a baseline of 3 windows 18 s)."""

from __future__ import annotations

import secrets
import time

import grpc

from devstack.mesh import Mesh
from tests.helpers import Stubs, eventually, http_call, rpc_error
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb


def trends(stubs: Stubs, window: str = "1h") -> dict[str, pb.Trend]:
    reply = stubs.tweets.GetTrends(pb.GetTrendsRequest(window=window, limit=50), timeout=10)
    return {t.tag: t for t in reply.trends}


def test_a_burst_of_one_tag_rises_above_a_steady_one_used_more(stubs: Stubs, mesh: Mesh) -> None:
    author = stubs.sign_up("trendy")
    steady, burst = f"steady{secrets.token_hex(3)}", f"burst{secrets.token_hex(3)}"
    started = time.monotonic()
    while time.monotonic() - started < 16:  # the baseline's windows and this one
        beat = time.monotonic()
        for _ in range(4):
            stubs.post(author, f"as every second #{steady}")
        time.sleep(max(0.0, 1 - (time.monotonic() - beat)))
    for i in range(6):
        stubs.post(author, f"news {i} #{burst}")

    def ranked() -> dict[str, pb.Trend] | None:
        found = trends(stubs)
        return found if burst in found and steady in found else None

    found = eventually(ranked, timeout=5)  # counted within seconds of the posts
    order = list(found)
    # The steady tag was used more in the window, but only as much as always: the burst ranks first.
    assert found[steady].count > found[burst].count, (found[steady], found[burst])
    assert order.index(burst) < order.index(steady)
    assert found[steady].expected > 0 and found[burst].expected == 0
    assert found[burst].score > found[steady].score

    # Through Envoy, the same ranking; a window it does not know is refused.
    body = http_call(mesh.ports.envoy, "GET", "/v1/trends?window=1h&limit=50").json()
    assert body["window"] == "1h" and any(t["tag"] == burst for t in body["trends"])
    error = rpc_error(lambda: trends(stubs, "2d"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "window" in str(error.details())
    assert http_call(mesh.ports.envoy, "GET", "/v1/trends?window=forever").status == 400
    error = rpc_error(lambda: stubs.tweets.GetTrends(pb.GetTrendsRequest(limit=-1), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in str(error.details())


def test_a_deleted_tweet_takes_its_tags_back(stubs: Stubs) -> None:
    author = stubs.sign_up("untrendy")
    tag = f"gone{secrets.token_hex(3)}"
    posted = [stubs.post(author, f"#{tag} {i}") for i in range(4)]
    eventually(lambda: trends(stubs, "6h").get(tag, pb.Trend()).count == 4, timeout=5)
    for tweet in posted[:2]:
        stubs.tweets.DeleteTweet(
            pb.DeleteTweetRequest(tweet_id=tweet.tweet_id), metadata=author.auth, timeout=10
        )
    eventually(lambda: tag not in trends(stubs, "6h"), timeout=5)  # 2 uses: below the 3 a trend needs


def test_an_edit_moves_its_tweets_count_to_its_new_tags(stubs: Stubs) -> None:
    author = stubs.sign_up("retagger")
    old, new = f"before{secrets.token_hex(3)}", f"after{secrets.token_hex(3)}"
    posted = [stubs.post(author, f"#{old} {i}") for i in range(4)]
    eventually(lambda: trends(stubs, "6h").get(old, pb.Trend()).count == 4, timeout=5)
    for tweet in posted:
        request = pb.EditTweetRequest(tweet_id=tweet.tweet_id, text=f"#{new} instead")
        stubs.tweets.EditTweet(request, metadata=author.auth, timeout=10)
    eventually(lambda: trends(stubs, "6h").get(new, pb.Trend()).count == 4, timeout=5)
    assert old not in trends(stubs, "6h")
