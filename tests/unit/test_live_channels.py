"""Live channels' names under sharded pub/sub: a timeline's channel lives in its timeline's slot
(where the scripts writing the timeline publish it); any other channel keeps its name."""

from __future__ import annotations

from redis.crc import key_slot

from social.live import GLOBAL_CHANNEL, celebrity_channel, live_channel, notification_channel
from social.timelines import CELEBRITY_LIST_PREFIX, home_key, sharded_channel, timeline_key


def test_a_timelines_channel_is_named_into_the_slot_of_its_timeline() -> None:
    for user in (1, 42, 9_007_199_254_740_993):
        name = sharded_channel(live_channel(user))
        assert name == f"live:{user}{{home:{user}}}"
        assert key_slot(name.encode()) == key_slot(home_key(user).encode())
    name = sharded_channel(celebrity_channel(7))
    assert key_slot(name.encode()) == key_slot(timeline_key(CELEBRITY_LIST_PREFIX, 7).encode())
    assert name.startswith(celebrity_channel(7))


def test_channels_of_no_timeline_keep_their_names() -> None:
    for name in (GLOBAL_CHANNEL, notification_channel(5), "live:", "live:12a"):
        assert sharded_channel(name) == name
