import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tweetmesh.users.v1 import users_service_pb2 as _users_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tweet(_message.Message):
    __slots__ = ("tweet_id", "author_id", "author", "text", "create_time", "reply_to_tweet_id", "reply_count")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_COUNT_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    author_id: str
    author: _users_service_pb2.User
    text: str
    create_time: _timestamp_pb2.Timestamp
    reply_to_tweet_id: str
    reply_count: int
    def __init__(self, tweet_id: _Optional[str] = ..., author_id: _Optional[str] = ..., author: _Optional[_Union[_users_service_pb2.User, _Mapping]] = ..., text: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to_tweet_id: _Optional[str] = ..., reply_count: _Optional[int] = ...) -> None: ...

class CreateTweetRequest(_message.Message):
    __slots__ = ("text", "reply_to_tweet_id", "request_id")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    text: str
    reply_to_tweet_id: str
    request_id: str
    def __init__(self, text: _Optional[str] = ..., reply_to_tweet_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateTweetResponse(_message.Message):
    __slots__ = ("tweet",)
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet: Tweet
    def __init__(self, tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class GetTweetRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class GetTweetResponse(_message.Message):
    __slots__ = ("tweet",)
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet: Tweet
    def __init__(self, tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class ListUserTweetsRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListUserTweetsResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    next_page_token: str
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class BatchGetTweetsRequest(_message.Message):
    __slots__ = ("tweet_ids",)
    TWEET_IDS_FIELD_NUMBER: _ClassVar[int]
    tweet_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tweet_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetTweetsResponse(_message.Message):
    __slots__ = ("tweets",)
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ...) -> None: ...

class ListTweetIdsByAuthorsRequest(_message.Message):
    __slots__ = ("author_ids", "before_tweet_id", "after_tweet_id", "limit")
    AUTHOR_IDS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    author_ids: _containers.RepeatedScalarFieldContainer[str]
    before_tweet_id: str
    after_tweet_id: str
    limit: int
    def __init__(self, author_ids: _Optional[_Iterable[str]] = ..., before_tweet_id: _Optional[str] = ..., after_tweet_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class TweetRef(_message.Message):
    __slots__ = ("tweet_id", "author_id")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    author_id: str
    def __init__(self, tweet_id: _Optional[str] = ..., author_id: _Optional[str] = ...) -> None: ...

class ListTweetIdsByAuthorsResponse(_message.Message):
    __slots__ = ("tweets",)
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[TweetRef]
    def __init__(self, tweets: _Optional[_Iterable[_Union[TweetRef, _Mapping]]] = ...) -> None: ...

class BatchGetTweetCountsRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class UserTweetCount(_message.Message):
    __slots__ = ("user_id", "tweets_count")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TWEETS_COUNT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    tweets_count: int
    def __init__(self, user_id: _Optional[str] = ..., tweets_count: _Optional[int] = ...) -> None: ...

class BatchGetTweetCountsResponse(_message.Message):
    __slots__ = ("counts",)
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedCompositeFieldContainer[UserTweetCount]
    def __init__(self, counts: _Optional[_Iterable[_Union[UserTweetCount, _Mapping]]] = ...) -> None: ...

class TweetEvent(_message.Message):
    __slots__ = ("tweet_id", "author_id", "create_time", "reply_to_tweet_id")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    author_id: str
    create_time: _timestamp_pb2.Timestamp
    reply_to_tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ..., author_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to_tweet_id: _Optional[str] = ...) -> None: ...
