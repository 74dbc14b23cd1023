"""The social domain the services share: who may see a tweet (rules), what text is visible (text),
the timelines in Redis and their live channels, the celebrity registry, the event streams, and the
clients of the owners.

A rule or a Redis structure that more than one service applies belongs here, once; what a single
service owns stays in that service. Built on meshkit (the generic service kit), never the reverse.
"""

from social.celebrities import MERGED_AT_READ, CelebrityRegistry, State
from social.events import FOLLOWS_STREAM, TWEETS_STREAM
from social.live import CelebrityFollow, LiveMessage, TweetEdited, celebrity_channel, live_channel
from social.peers import MediaFacts, MediaPeer, TweetsPeer, UsersPeer
from social.rules import TweetRef, belongs_in_home, is_for_everyone, is_public
from social.text import has_visible_character
from social.timelines import Snapshot, TimelineStore, celebrity_lists, home_timelines

__all__ = [
    "FOLLOWS_STREAM",
    "MERGED_AT_READ",
    "TWEETS_STREAM",
    "CelebrityFollow",
    "CelebrityRegistry",
    "LiveMessage",
    "MediaFacts",
    "MediaPeer",
    "Snapshot",
    "State",
    "TimelineStore",
    "TweetEdited",
    "TweetRef",
    "TweetsPeer",
    "UsersPeer",
    "belongs_in_home",
    "celebrity_channel",
    "celebrity_lists",
    "has_visible_character",
    "home_timelines",
    "is_for_everyone",
    "is_public",
    "live_channel",
]
