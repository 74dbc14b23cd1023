"""The social domain the services share: who may see a tweet (rules), what text is visible (text),
the timelines in Redis and their live channels, the celebrity registry, the event streams, and the
clients of the owners.

A rule or a Redis structure that more than one service applies belongs here, once; what a single
service owns stays in that service. Built on meshkit (the generic service kit), never the reverse.
"""

from social.celebrities import MERGED_AT_READ, CelebrityRegistry, State
from social.events import ACCOUNTS_STREAM, FOLLOWS_STREAM, LIKES_STREAM, TWEETS_STREAM
from social.live import (
    CelebrityFollow,
    LiveMessage,
    LiveTweet,
    TweetEdited,
    celebrity_channel,
    live_channel,
    notification_channel,
)
from social.peers import MediaFacts, MediaPeer, NotificationsPeer, TweetsPeer, UsersPeer
from social.relations import Relations, RelationsCache
from social.rules import (
    Relation,
    TweetRef,
    belongs_in_home,
    interaction_refused,
    is_for_everyone,
    is_hidden,
    is_public,
)
from social.text import has_visible_character
from social.timelines import Snapshot, TimelineStore, celebrity_lists, home_timelines

__all__ = [
    "ACCOUNTS_STREAM",
    "FOLLOWS_STREAM",
    "LIKES_STREAM",
    "MERGED_AT_READ",
    "TWEETS_STREAM",
    "CelebrityFollow",
    "CelebrityRegistry",
    "LiveMessage",
    "LiveTweet",
    "MediaFacts",
    "MediaPeer",
    "NotificationsPeer",
    "Relation",
    "Relations",
    "RelationsCache",
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
    "interaction_refused",
    "is_for_everyone",
    "is_hidden",
    "is_public",
    "live_channel",
    "notification_channel",
]
