"""Media on tweets: attached by CreateTweet (the uploader's own, unattached, at most 4, with alt
text), carried wherever the tweet is read, refused with nothing stored otherwise, deleted with its
tweet, and collected when nobody attached it in time (but never when a tweet holds it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from devstack.mesh import Mesh
from media_svc.service import original_key
from tests.helpers import Account, LiveStream, Stubs, eventually, http_call, rpc_error
from tests.media_samples import TINY_MP4, encode, picture
from tweetmesh.media.v1 import media_service_pb2 as media_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb

PHOTO = encode(picture((300, 200)), "PNG")


def photo(stubs: Stubs, owner: Account) -> str:
    return stubs.upload(owner, PHOTO, "image/png").media_id


def post(
    stubs: Stubs,
    author: Account,
    text: str,
    media_ids: list[str],
    alt_texts: dict[str, str] | None = None,
    request_id: str = "",
) -> pb.Tweet:
    request = pb.CreateTweetRequest(
        text=text, media_ids=media_ids, alt_texts=alt_texts, request_id=request_id
    )
    return stubs.tweets.CreateTweet(request, metadata=author.auth, timeout=30).tweet


def media_row(mesh: Mesh, media_id: str) -> tuple[str, int | None] | None:
    """media_svc's (state, tweet_id) of a media, None when it has no row."""
    with psycopg.connect(mesh.database_url) as conn:
        row = conn.execute(
            "SELECT state, tweet_id FROM media.media WHERE id = %s", (int(media_id),)
        ).fetchone()
    return None if row is None else (str(row[0]), row[1])


def blob(mesh: Mesh, media_id: str) -> Path:
    return Path(mesh.media_store) / original_key(int(media_id))


def served(mesh: Mesh, media_id: str) -> int:
    return http_call(mesh.ports.envoy, "GET", f"/v1/media/{media_id}").status


def test_a_tweet_carries_its_media_wherever_it_is_read(stubs: Stubs, mesh: Mesh) -> None:
    author, follower = stubs.sign_up("shower"), stubs.sign_up("viewer")
    stubs.follow(follower, author)
    stubs.home(follower)  # fan-out writes only home timelines that exist
    image = photo(stubs, author)
    video = stubs.upload(author, TINY_MP4.read_bytes(), "video/mp4").media_id
    stream = LiveStream(stubs.timeline, follower)
    try:
        stream.next_event(timeout=10)
        posted = post(stubs, author, "", [video, image], alt_texts={image: "four coloured quadrants"})
        streamed = stream.next_tweet(timeout=15)
    finally:
        stream.close()

    assert posted.text == ""  # media alone is a tweet
    assert [m.media_id for m in posted.media] == [video, image]  # in the order given
    shown_video, shown_image = posted.media
    assert (shown_video.content_type, shown_video.width, shown_video.height) == ("video/mp4", 64, 48)
    assert shown_video.duration.ToMilliseconds() == 1000 and shown_video.thumbnail_url == ""
    assert shown_image.alt_text == "four coloured quadrants" and shown_video.alt_text == ""
    assert (
        shown_image.url == f"/v1/media/{image}"
        and shown_image.thumbnail_url == f"/v1/media/{image}:thumbnail"
    )
    assert streamed.media == posted.media
    assert stubs.tweets.GetTweet(pb.GetTweetRequest(tweet_id=posted.tweet_id)).tweet.media == posted.media
    listed = stubs.tweets.ListUserTweets(pb.ListUserTweetsRequest(user_id=author.user_id)).tweets
    assert listed[0].media == posted.media
    assert eventually(lambda: stubs.home(follower).tweets)[0].media == posted.media
    retweet = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=posted.tweet_id), metadata=follower.auth).tweet
    assert retweet.retweeted_tweet.media == posted.media
    # Over HTTP: the JSON names the media and where to fetch it; the bytes are there.
    tweet_json = http_call(mesh.ports.envoy, "GET", f"/v1/tweets/{posted.tweet_id}").json()["tweet"]
    assert tweet_json["media"][1] == {
        "media_id": image,
        "content_type": "image/png",
        "width": 300,
        "height": 200,
        "duration": "0s",
        "url": f"/v1/media/{image}",
        "thumbnail_url": f"/v1/media/{image}:thumbnail",
        "alt_text": "four coloured quadrants",
    }
    assert served(mesh, image) == served(mesh, video) == 200
    # media_svc learnt of the attachment from the tweet's event.
    eventually(lambda: media_row(mesh, image) == ("ready", int(posted.tweet_id)))


def _refusal(
    stubs: Stubs, author: Account, *media_ids: str, alt_texts: dict[str, str] | None = None
) -> grpc.RpcError:
    return rpc_error(lambda: post(stubs, author, "refused", list(media_ids), alt_texts))


def test_a_post_with_media_it_may_not_have_is_refused_and_stores_nothing(stubs: Stubs, mesh: Mesh) -> None:
    author, other = stubs.sign_up("poster"), stubs.sign_up("stranger")
    mine = [photo(stubs, author) for _ in range(5)]
    theirs = photo(stubs, other)
    attached = photo(stubs, author)
    post(stubs, author, "this one holds it", [attached])
    before = stubs.snapshot(author, other)

    cases = {
        "someone else's": (
            _refusal(stubs, author, mine[0], theirs),
            grpc.StatusCode.PERMISSION_DENIED,
            "MEDIA_NOT_OWNED",
        ),
        "five": (_refusal(stubs, author, *mine), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
        "unknown": (
            _refusal(stubs, author, "1999999999999999999"),
            grpc.StatusCode.NOT_FOUND,
            "MEDIA_NOT_FOUND",
        ),
        "twice": (
            _refusal(stubs, author, mine[0], mine[0]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
        ),
        "attached elsewhere": (
            _refusal(stubs, author, mine[0], attached),
            grpc.StatusCode.FAILED_PRECONDITION,
            "MEDIA_ALREADY_ATTACHED",
        ),
        "alt text for a media not posted": (
            _refusal(stubs, author, mine[0], alt_texts={mine[1]: "not here"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
        ),
        "alt text too long": (
            _refusal(stubs, author, mine[0], alt_texts={mine[0]: "x" * 1001}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
        ),
        "not an id": (_refusal(stubs, author, "../1"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
    }
    for name, (error, code, reason) in cases.items():
        assert error.code() == code, (name, error.details())
        assert reason in str(error.trailing_metadata()), (name, error.details())
    assert stubs.snapshot(author, other) == before
    # What was refused is still the author's to post, and the refused media untouched.
    four = post(stubs, author, "the first four", mine[:4])
    assert [m.media_id for m in four.media] == mine[:4]
    assert media_row(mesh, theirs) == ("ready", None)


def test_over_http_someone_elses_media_is_403_and_five_are_400(stubs: Stubs, mesh: Mesh) -> None:
    author, other = stubs.sign_up("webposter"), stubs.sign_up("webother")
    theirs = photo(stubs, other)
    answer = http_call(
        mesh.ports.envoy, "POST", "/v1/tweets", {"text": "x", "media_ids": [theirs]}, author.token
    )
    assert answer.status == 403 and answer.json()["details"][0]["reason"] == "MEDIA_NOT_OWNED"
    five = [photo(stubs, author) for _ in range(5)]
    answer = http_call(mesh.ports.envoy, "POST", "/v1/tweets", {"text": "x", "media_ids": five}, author.token)
    assert answer.status == 400 and answer.json()["details"][0]["reason"] == "INVALID_FIELD"
    answer = http_call(mesh.ports.envoy, "POST", "/v1/tweets", {"text": " ", "media_ids": []}, author.token)
    assert answer.status == 400  # no text and no media


def test_a_retried_post_with_media_answers_the_first_tweet(stubs: Stubs) -> None:
    author = stubs.sign_up("retrier")
    image = photo(stubs, author)
    first = post(stubs, author, "once", [image], request_id="media-retry")
    again = post(stubs, author, "once", [image], request_id="media-retry")
    assert again.tweet_id == first.tweet_id and again.media == first.media
    assert stubs.user(author).tweets_count == 1


def test_two_posts_racing_for_one_media_attach_it_once(stubs: Stubs) -> None:
    author = stubs.sign_up("racer")
    image = photo(stubs, author)
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def race(n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(post(stubs, author, f"racer {n}", [image]))
        except grpc.RpcError as error:
            outcomes.append(error.code())

    threads = [threading.Thread(target=race, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    tweets = [o for o in outcomes if isinstance(o, pb.Tweet)]
    assert len(tweets) == 1, outcomes
    assert outcomes.count(grpc.StatusCode.FAILED_PRECONDITION) == 3
    assert stubs.user(author).tweets_count == 1


def test_deleting_a_tweet_deletes_its_media(stubs: Stubs, mesh: Mesh) -> None:
    author = stubs.sign_up("deleter")
    image, kept = photo(stubs, author), photo(stubs, author)
    doomed = post(stubs, author, "gone soon", [image])
    post(stubs, author, "stays", [kept])
    assert blob(mesh, image).exists() and served(mesh, image) == 200
    stubs.tweets.DeleteTweet(
        pb.DeleteTweetRequest(tweet_id=doomed.tweet_id), metadata=author.auth, timeout=10
    )
    eventually(lambda: served(mesh, image) == 404, timeout=15)
    eventually(lambda: media_row(mesh, image) is None and not blob(mesh, image).exists())
    assert served(mesh, kept) == 200


@pytest.fixture
def quick_sweeps(mesh: Mesh) -> Iterator[None]:
    """media_svc collecting media left unattached for 2 s, sweeping every 0.2 s (its usual self again
    after the test)."""
    mesh.start_service("media", {"MEDIA_UNATTACHED_SECONDS": "2", "MEDIA_SWEEP_SECONDS": "0.2"})
    try:
        yield
    finally:
        mesh.start_service("media")


def test_media_nobody_attached_is_collected_and_media_a_tweet_holds_is_not(
    stubs: Stubs, mesh: Mesh, quick_sweeps: None
) -> None:
    author = stubs.sign_up("collected")
    unattached, attached, late, claimed = (photo(stubs, author) for _ in range(4))
    post(stubs, author, "holds one", [attached])
    tweet = post(stubs, author, "holds one whose event was lost", [late])
    eventually(lambda: media_row(mesh, late) == ("ready", int(tweet.tweet_id)))
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        # As if media_svc had never heard of the attachment (its event lost or late)...
        conn.execute("UPDATE media.media SET tweet_id = NULL WHERE id = %s", (int(late),))
        # ...and an upload whose writer died between its row and its blobs, two hours ago.
        leftover = conn.execute(
            "INSERT INTO media.media (owner_id, state, content_type, width, height, duration_ms, frames,"
            " size_bytes, sha256, create_time) VALUES (%s, 'uploading', 'image/png', 1, 1, 0, 1, 1, 'x',"
            " now() - interval '2 hours') RETURNING id",
            (int(author.user_id),),
        ).fetchone()
    assert leftover is not None
    # A tweet being posted holds its media for an hour.
    stubs.media.ClaimMedia(
        media_pb.ClaimMediaRequest(owner_id=author.user_id, media_ids=[claimed]), timeout=10
    )

    eventually(lambda: media_row(mesh, unattached) is None, timeout=20)
    assert served(mesh, unattached) == 404 and not blob(mesh, unattached).exists()
    assert media_row(mesh, str(leftover[0])) is None
    # The sweeper asked tweets_svc before collecting `late`: it knows the tweet again, and serves it.
    eventually(lambda: media_row(mesh, late) == ("ready", int(tweet.tweet_id)), timeout=10)
    assert media_row(mesh, attached) is not None and media_row(mesh, claimed) == ("ready", None)
    assert served(mesh, attached) == served(mesh, late) == served(mesh, claimed) == 200
