import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tweetmesh.tweets.v1 import tweets_service_pb2 as _tweets_service_pb2
from tweetmesh.users.v1 import users_service_pb2 as _users_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NotificationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_KIND_UNSPECIFIED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_FOLLOW: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_MENTION: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_REPLY: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_LIKE: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_RETWEET: _ClassVar[NotificationKind]
NOTIFICATION_KIND_UNSPECIFIED: NotificationKind
NOTIFICATION_KIND_FOLLOW: NotificationKind
NOTIFICATION_KIND_MENTION: NotificationKind
NOTIFICATION_KIND_REPLY: NotificationKind
NOTIFICATION_KIND_LIKE: NotificationKind
NOTIFICATION_KIND_RETWEET: NotificationKind

class Notification(_message.Message):
    __slots__ = ("notification_id", "kind", "actor", "tweet", "group_key", "create_time")
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TWEET_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    kind: NotificationKind
    actor: _users_service_pb2.User
    tweet: _tweets_service_pb2.Tweet
    group_key: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, notification_id: _Optional[str] = ..., kind: _Optional[_Union[NotificationKind, str]] = ..., actor: _Optional[_Union[_users_service_pb2.User, _Mapping]] = ..., tweet: _Optional[_Union[_tweets_service_pb2.Tweet, _Mapping]] = ..., group_key: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NotificationGroup(_message.Message):
    __slots__ = ("group_key", "kind", "notifications_count", "sample_accounts", "tweet", "latest_notification_id", "latest_time", "unread")
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_COUNT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    TWEET_FIELD_NUMBER: _ClassVar[int]
    LATEST_NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    LATEST_TIME_FIELD_NUMBER: _ClassVar[int]
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    group_key: str
    kind: NotificationKind
    notifications_count: int
    sample_accounts: _containers.RepeatedCompositeFieldContainer[_users_service_pb2.User]
    tweet: _tweets_service_pb2.Tweet
    latest_notification_id: str
    latest_time: _timestamp_pb2.Timestamp
    unread: bool
    def __init__(self, group_key: _Optional[str] = ..., kind: _Optional[_Union[NotificationKind, str]] = ..., notifications_count: _Optional[int] = ..., sample_accounts: _Optional[_Iterable[_Union[_users_service_pb2.User, _Mapping]]] = ..., tweet: _Optional[_Union[_tweets_service_pb2.Tweet, _Mapping]] = ..., latest_notification_id: _Optional[str] = ..., latest_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unread: _Optional[bool] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("groups", "next_page_token")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[NotificationGroup]
    next_page_token: str
    def __init__(self, groups: _Optional[_Iterable[_Union[NotificationGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetUnreadCountRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetUnreadCountResponse(_message.Message):
    __slots__ = ("count", "more")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    count: int
    more: bool
    def __init__(self, count: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class MarkNotificationsReadRequest(_message.Message):
    __slots__ = ("up_to_id",)
    UP_TO_ID_FIELD_NUMBER: _ClassVar[int]
    up_to_id: str
    def __init__(self, up_to_id: _Optional[str] = ...) -> None: ...

class MarkNotificationsReadResponse(_message.Message):
    __slots__ = ("read_up_to_id",)
    READ_UP_TO_ID_FIELD_NUMBER: _ClassVar[int]
    read_up_to_id: str
    def __init__(self, read_up_to_id: _Optional[str] = ...) -> None: ...

class BatchGetNotificationsRequest(_message.Message):
    __slots__ = ("recipient_id", "notification_ids")
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_IDS_FIELD_NUMBER: _ClassVar[int]
    recipient_id: str
    notification_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, recipient_id: _Optional[str] = ..., notification_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetNotificationsResponse(_message.Message):
    __slots__ = ("notifications",)
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ...) -> None: ...

class ListNotificationsAfterRequest(_message.Message):
    __slots__ = ("recipient_id", "after_id", "limit")
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    recipient_id: str
    after_id: str
    limit: int
    def __init__(self, recipient_id: _Optional[str] = ..., after_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListNotificationsAfterResponse(_message.Message):
    __slots__ = ("notifications",)
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ...) -> None: ...
