import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tweetmesh.notifications.v1 import notifications_service_pb2 as _notifications_service_pb2
from tweetmesh.tweets.v1 import tweets_service_pb2 as _tweets_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetHomeTimelineRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetHomeTimelineResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token", "rebuilding")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REBUILDING_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[_tweets_service_pb2.Tweet]
    next_page_token: str
    rebuilding: bool
    def __init__(self, tweets: _Optional[_Iterable[_Union[_tweets_service_pb2.Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., rebuilding: _Optional[bool] = ...) -> None: ...

class StreamHomeTimelineRequest(_message.Message):
    __slots__ = ("since_tweet_id",)
    SINCE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    since_tweet_id: str
    def __init__(self, since_tweet_id: _Optional[str] = ...) -> None: ...

class StreamGlobalTimelineRequest(_message.Message):
    __slots__ = ("since_tweet_id",)
    SINCE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    since_tweet_id: str
    def __init__(self, since_tweet_id: _Optional[str] = ...) -> None: ...

class StreamGlobalTimelineResponse(_message.Message):
    __slots__ = ("tweet", "deletion", "heartbeat", "gap", "update")
    TWEET_FIELD_NUMBER: _ClassVar[int]
    DELETION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    tweet: _tweets_service_pb2.Tweet
    deletion: TweetDeletion
    heartbeat: Heartbeat
    gap: TimelineGap
    update: _tweets_service_pb2.Tweet
    def __init__(self, tweet: _Optional[_Union[_tweets_service_pb2.Tweet, _Mapping]] = ..., deletion: _Optional[_Union[TweetDeletion, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., gap: _Optional[_Union[TimelineGap, _Mapping]] = ..., update: _Optional[_Union[_tweets_service_pb2.Tweet, _Mapping]] = ...) -> None: ...

class TimelineGap(_message.Message):
    __slots__ = ("since_tweet_id", "before_tweet_id", "page_token")
    SINCE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    since_tweet_id: str
    before_tweet_id: str
    page_token: str
    def __init__(self, since_tweet_id: _Optional[str] = ..., before_tweet_id: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class TweetDeletion(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time",)
    TIME_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamHomeTimelineResponse(_message.Message):
    __slots__ = ("tweet", "deletion", "heartbeat", "gap", "update")
    TWEET_FIELD_NUMBER: _ClassVar[int]
    DELETION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    tweet: _tweets_service_pb2.Tweet
    deletion: TweetDeletion
    heartbeat: Heartbeat
    gap: TimelineGap
    update: _tweets_service_pb2.Tweet
    def __init__(self, tweet: _Optional[_Union[_tweets_service_pb2.Tweet, _Mapping]] = ..., deletion: _Optional[_Union[TweetDeletion, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., gap: _Optional[_Union[TimelineGap, _Mapping]] = ..., update: _Optional[_Union[_tweets_service_pb2.Tweet, _Mapping]] = ...) -> None: ...

class StreamNotificationsRequest(_message.Message):
    __slots__ = ("since_notification_id",)
    SINCE_NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    since_notification_id: str
    def __init__(self, since_notification_id: _Optional[str] = ...) -> None: ...

class NotificationRemoval(_message.Message):
    __slots__ = ("notification_id",)
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    def __init__(self, notification_id: _Optional[str] = ...) -> None: ...

class StreamNotificationsResponse(_message.Message):
    __slots__ = ("notification", "removal", "heartbeat")
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    REMOVAL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    notification: _notifications_service_pb2.Notification
    removal: NotificationRemoval
    heartbeat: Heartbeat
    def __init__(self, notification: _Optional[_Union[_notifications_service_pb2.Notification, _Mapping]] = ..., removal: _Optional[_Union[NotificationRemoval, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...
