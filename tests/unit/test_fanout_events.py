"""fanout_svc reads the events of the streams: a good one becomes the change it announces; one it
can never handle (no payload, not a message, an invalid id) is poison, dead-lettered at once."""

from __future__ import annotations

import pytest

from fanout_svc.server import follow_changed, tweet_changed
from fanout_svc.service import FollowChanged, TweetChanged
from meshkit.streams import Entry, PoisonEvent
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb


def entry(data: bytes | None) -> Entry:
    return Entry(b"1-0", {} if data is None else {b"data": data})


def test_events_become_the_changes_they_announce() -> None:
    tweet = tweets_pb.TweetEvent(
        tweet_id="10", author_id="1", reply_to_author_id="2", mentioned_user_ids=["2", "3"], public=False
    )
    assert tweet_changed(entry(tweet.SerializeToString())) == TweetChanged(
        10, 1, reply_to_author_id=2, mentioned_user_ids=(2, 3)
    )
    deleted = tweets_pb.TweetEvent(tweet_id="10", author_id="1", kind=tweets_pb.TweetEvent.KIND_DELETED)
    assert tweet_changed(entry(deleted.SerializeToString())).deleted
    follow = users_pb.FollowEvent(follower_id="4", followee_id="5", following=True)
    assert follow_changed(entry(follow.SerializeToString())) == FollowChanged(4, 5, True)


@pytest.mark.parametrize(
    "data",
    [
        None,  # no payload
        b"\xff\xff\xff",  # not a message
        tweets_pb.TweetEvent(tweet_id="ten", author_id="1").SerializeToString(),  # an invalid id
        tweets_pb.TweetEvent(tweet_id="10").SerializeToString(),  # no author
    ],
)
def test_an_event_that_can_never_be_handled_is_poison(data: bytes | None) -> None:
    with pytest.raises(PoisonEvent):
        tweet_changed(entry(data))
    with pytest.raises(PoisonEvent):
        follow_changed(entry(data))


def test_an_edit_event_says_who_was_mentioned_before() -> None:
    edited = tweets_pb.TweetEvent(
        tweet_id="10",
        author_id="1",
        kind=tweets_pb.TweetEvent.KIND_EDITED,
        mentioned_user_ids=["3"],
        previous_mentioned_user_ids=["2"],
    )
    assert tweet_changed(entry(edited.SerializeToString())) == TweetChanged(
        10, 1, mentioned_user_ids=(3,), edited=True, previously_mentioned=(2,)
    )
