import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tweetmesh.users.v1 import users_service_pb2 as _users_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QuoteStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUOTE_STATUS_UNSPECIFIED: _ClassVar[QuoteStatus]
    QUOTE_STATUS_AVAILABLE: _ClassVar[QuoteStatus]
    QUOTE_STATUS_DELETED: _ClassVar[QuoteStatus]
    QUOTE_STATUS_UNAVAILABLE: _ClassVar[QuoteStatus]
QUOTE_STATUS_UNSPECIFIED: QuoteStatus
QUOTE_STATUS_AVAILABLE: QuoteStatus
QUOTE_STATUS_DELETED: QuoteStatus
QUOTE_STATUS_UNAVAILABLE: QuoteStatus

class Tweet(_message.Message):
    __slots__ = ("tweet_id", "author_id", "author", "text", "create_time", "reply_to_tweet_id", "reply_count", "reply_to_author_id", "reply_to_deleted", "retweet_of_tweet_id", "retweeted_tweet", "like_count", "retweet_count", "mentions", "hashtags", "media", "quote_tweet_id", "quoted_tweet", "quote_status", "quote_count", "edit_time", "edit_count")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_DELETED_FIELD_NUMBER: _ClassVar[int]
    RETWEET_OF_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    RETWEETED_TWEET_FIELD_NUMBER: _ClassVar[int]
    LIKE_COUNT_FIELD_NUMBER: _ClassVar[int]
    RETWEET_COUNT_FIELD_NUMBER: _ClassVar[int]
    MENTIONS_FIELD_NUMBER: _ClassVar[int]
    HASHTAGS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    QUOTE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    QUOTED_TWEET_FIELD_NUMBER: _ClassVar[int]
    QUOTE_STATUS_FIELD_NUMBER: _ClassVar[int]
    QUOTE_COUNT_FIELD_NUMBER: _ClassVar[int]
    EDIT_TIME_FIELD_NUMBER: _ClassVar[int]
    EDIT_COUNT_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    author_id: str
    author: _users_service_pb2.User
    text: str
    create_time: _timestamp_pb2.Timestamp
    reply_to_tweet_id: str
    reply_count: int
    reply_to_author_id: str
    reply_to_deleted: bool
    retweet_of_tweet_id: str
    retweeted_tweet: Tweet
    like_count: int
    retweet_count: int
    mentions: _containers.RepeatedCompositeFieldContainer[Mention]
    hashtags: _containers.RepeatedScalarFieldContainer[str]
    media: _containers.RepeatedCompositeFieldContainer[TweetMedia]
    quote_tweet_id: str
    quoted_tweet: Tweet
    quote_status: QuoteStatus
    quote_count: int
    edit_time: _timestamp_pb2.Timestamp
    edit_count: int
    def __init__(self, tweet_id: _Optional[str] = ..., author_id: _Optional[str] = ..., author: _Optional[_Union[_users_service_pb2.User, _Mapping]] = ..., text: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to_tweet_id: _Optional[str] = ..., reply_count: _Optional[int] = ..., reply_to_author_id: _Optional[str] = ..., reply_to_deleted: _Optional[bool] = ..., retweet_of_tweet_id: _Optional[str] = ..., retweeted_tweet: _Optional[_Union[Tweet, _Mapping]] = ..., like_count: _Optional[int] = ..., retweet_count: _Optional[int] = ..., mentions: _Optional[_Iterable[_Union[Mention, _Mapping]]] = ..., hashtags: _Optional[_Iterable[str]] = ..., media: _Optional[_Iterable[_Union[TweetMedia, _Mapping]]] = ..., quote_tweet_id: _Optional[str] = ..., quoted_tweet: _Optional[_Union[Tweet, _Mapping]] = ..., quote_status: _Optional[_Union[QuoteStatus, str]] = ..., quote_count: _Optional[int] = ..., edit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., edit_count: _Optional[int] = ...) -> None: ...

class TweetMedia(_message.Message):
    __slots__ = ("media_id", "content_type", "width", "height", "duration", "url", "thumbnail_url", "alt_text")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_URL_FIELD_NUMBER: _ClassVar[int]
    ALT_TEXT_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    content_type: str
    width: int
    height: int
    duration: _duration_pb2.Duration
    url: str
    thumbnail_url: str
    alt_text: str
    def __init__(self, media_id: _Optional[str] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., url: _Optional[str] = ..., thumbnail_url: _Optional[str] = ..., alt_text: _Optional[str] = ...) -> None: ...

class Mention(_message.Message):
    __slots__ = ("user_id", "handle")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    handle: str
    def __init__(self, user_id: _Optional[str] = ..., handle: _Optional[str] = ...) -> None: ...

class CreateTweetRequest(_message.Message):
    __slots__ = ("text", "reply_to_tweet_id", "request_id", "media_ids", "alt_texts", "quote_tweet_id")
    class AltTextsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_IDS_FIELD_NUMBER: _ClassVar[int]
    ALT_TEXTS_FIELD_NUMBER: _ClassVar[int]
    QUOTE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    text: str
    reply_to_tweet_id: str
    request_id: str
    media_ids: _containers.RepeatedScalarFieldContainer[str]
    alt_texts: _containers.ScalarMap[str, str]
    quote_tweet_id: str
    def __init__(self, text: _Optional[str] = ..., reply_to_tweet_id: _Optional[str] = ..., request_id: _Optional[str] = ..., media_ids: _Optional[_Iterable[str]] = ..., alt_texts: _Optional[_Mapping[str, str]] = ..., quote_tweet_id: _Optional[str] = ...) -> None: ...

class CreateTweetResponse(_message.Message):
    __slots__ = ("tweet",)
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet: Tweet
    def __init__(self, tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class EditTweetRequest(_message.Message):
    __slots__ = ("tweet_id", "text", "media_ids", "alt_texts", "clear_media", "request_id")
    class AltTextsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MEDIA_IDS_FIELD_NUMBER: _ClassVar[int]
    ALT_TEXTS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_MEDIA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    text: str
    media_ids: _containers.RepeatedScalarFieldContainer[str]
    alt_texts: _containers.ScalarMap[str, str]
    clear_media: bool
    request_id: str
    def __init__(self, tweet_id: _Optional[str] = ..., text: _Optional[str] = ..., media_ids: _Optional[_Iterable[str]] = ..., alt_texts: _Optional[_Mapping[str, str]] = ..., clear_media: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class EditTweetResponse(_message.Message):
    __slots__ = ("tweet",)
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet: Tweet
    def __init__(self, tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class GetTweetHistoryRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class TweetVersion(_message.Message):
    __slots__ = ("text", "media", "time")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    text: str
    media: _containers.RepeatedCompositeFieldContainer[TweetMedia]
    time: _timestamp_pb2.Timestamp
    def __init__(self, text: _Optional[str] = ..., media: _Optional[_Iterable[_Union[TweetMedia, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTweetHistoryResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[TweetVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[TweetVersion, _Mapping]]] = ...) -> None: ...

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

class DeleteTweetRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class DeleteTweetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListQuotesRequest(_message.Message):
    __slots__ = ("tweet_id", "page_size", "page_token")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    page_size: int
    page_token: str
    def __init__(self, tweet_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListQuotesResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    next_page_token: str
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("tweet_id", "max_depth", "page_size", "page_token")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    max_depth: int
    page_size: int
    page_token: str
    def __init__(self, tweet_id: _Optional[str] = ..., max_depth: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ConversationEntry(_message.Message):
    __slots__ = ("tweet_id", "parent_tweet_id", "depth", "deleted", "tweet")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    parent_tweet_id: str
    depth: int
    deleted: bool
    tweet: Tweet
    def __init__(self, tweet_id: _Optional[str] = ..., parent_tweet_id: _Optional[str] = ..., depth: _Optional[int] = ..., deleted: _Optional[bool] = ..., tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("ancestors", "tweet", "replies", "next_page_token")
    ANCESTORS_FIELD_NUMBER: _ClassVar[int]
    TWEET_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ancestors: _containers.RepeatedCompositeFieldContainer[ConversationEntry]
    tweet: ConversationEntry
    replies: _containers.RepeatedCompositeFieldContainer[ConversationEntry]
    next_page_token: str
    def __init__(self, ancestors: _Optional[_Iterable[_Union[ConversationEntry, _Mapping]]] = ..., tweet: _Optional[_Union[ConversationEntry, _Mapping]] = ..., replies: _Optional[_Iterable[_Union[ConversationEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListRepliesRequest(_message.Message):
    __slots__ = ("tweet_id", "page_size", "page_token")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    page_size: int
    page_token: str
    def __init__(self, tweet_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRepliesResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    next_page_token: str
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RetweetRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class RetweetResponse(_message.Message):
    __slots__ = ("tweet",)
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet: Tweet
    def __init__(self, tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class UnretweetRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class UnretweetResponse(_message.Message):
    __slots__ = ("tweet",)
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet: Tweet
    def __init__(self, tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class LikeTweetRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class LikeTweetResponse(_message.Message):
    __slots__ = ("tweet",)
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet: Tweet
    def __init__(self, tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class UnlikeTweetRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class UnlikeTweetResponse(_message.Message):
    __slots__ = ("tweet",)
    TWEET_FIELD_NUMBER: _ClassVar[int]
    tweet: Tweet
    def __init__(self, tweet: _Optional[_Union[Tweet, _Mapping]] = ...) -> None: ...

class GetTrendsRequest(_message.Message):
    __slots__ = ("window", "limit")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    window: str
    limit: int
    def __init__(self, window: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Trend(_message.Message):
    __slots__ = ("tag", "count", "expected", "score")
    TAG_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    tag: str
    count: int
    expected: float
    score: float
    def __init__(self, tag: _Optional[str] = ..., count: _Optional[int] = ..., expected: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class GetTrendsResponse(_message.Message):
    __slots__ = ("trends", "window")
    TRENDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    trends: _containers.RepeatedCompositeFieldContainer[Trend]
    window: str
    def __init__(self, trends: _Optional[_Iterable[_Union[Trend, _Mapping]]] = ..., window: _Optional[str] = ...) -> None: ...

class BookmarkTweetRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class BookmarkTweetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnbookmarkTweetRequest(_message.Message):
    __slots__ = ("tweet_id",)
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    def __init__(self, tweet_id: _Optional[str] = ...) -> None: ...

class UnbookmarkTweetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBookmarksRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBookmarksResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    next_page_token: str
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListLikingUsersRequest(_message.Message):
    __slots__ = ("tweet_id", "page_size", "page_token")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    page_size: int
    page_token: str
    def __init__(self, tweet_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLikingUsersResponse(_message.Message):
    __slots__ = ("users", "next_page_token")
    USERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[_users_service_pb2.User]
    next_page_token: str
    def __init__(self, users: _Optional[_Iterable[_Union[_users_service_pb2.User, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListLikedTweetsRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLikedTweetsResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    next_page_token: str
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListMentionsRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMentionsResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    next_page_token: str
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListHashtagTweetsRequest(_message.Message):
    __slots__ = ("tag", "page_size", "page_token")
    TAG_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tag: str
    page_size: int
    page_token: str
    def __init__(self, tag: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListHashtagTweetsResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    next_page_token: str
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SearchTweetsRequest(_message.Message):
    __slots__ = ("query", "page_size", "page_token")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    query: str
    page_size: int
    page_token: str
    def __init__(self, query: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchTweetsResponse(_message.Message):
    __slots__ = ("tweets", "next_page_token")
    TWEETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tweets: _containers.RepeatedCompositeFieldContainer[Tweet]
    next_page_token: str
    def __init__(self, tweets: _Optional[_Iterable[_Union[Tweet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetGlobalTimelineRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetGlobalTimelineResponse(_message.Message):
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
    __slots__ = ("tweet_id", "author_id", "reply_to_author_id")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    author_id: str
    reply_to_author_id: str
    def __init__(self, tweet_id: _Optional[str] = ..., author_id: _Optional[str] = ..., reply_to_author_id: _Optional[str] = ...) -> None: ...

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

class ListMentionIdsRequest(_message.Message):
    __slots__ = ("user_id", "before_tweet_id", "after_tweet_id", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    before_tweet_id: str
    after_tweet_id: str
    limit: int
    def __init__(self, user_id: _Optional[str] = ..., before_tweet_id: _Optional[str] = ..., after_tweet_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListMentionIdsResponse(_message.Message):
    __slots__ = ("tweet_ids",)
    TWEET_IDS_FIELD_NUMBER: _ClassVar[int]
    tweet_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tweet_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetMediaTweetsRequest(_message.Message):
    __slots__ = ("media_ids",)
    MEDIA_IDS_FIELD_NUMBER: _ClassVar[int]
    media_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, media_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class MediaTweet(_message.Message):
    __slots__ = ("media_id", "tweet_id")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    tweet_id: str
    def __init__(self, media_id: _Optional[str] = ..., tweet_id: _Optional[str] = ...) -> None: ...

class BatchGetMediaTweetsResponse(_message.Message):
    __slots__ = ("media",)
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    media: _containers.RepeatedCompositeFieldContainer[MediaTweet]
    def __init__(self, media: _Optional[_Iterable[_Union[MediaTweet, _Mapping]]] = ...) -> None: ...

class TweetEvent(_message.Message):
    __slots__ = ("tweet_id", "author_id", "create_time", "reply_to_tweet_id", "kind", "reply_to_author_id", "retweet_of_tweet_id", "mentioned_user_ids", "public", "media_ids", "quote_tweet_id", "hashtags", "previous_hashtags", "previous_mentioned_user_ids", "retweet_of_author_id")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[TweetEvent.Kind]
        KIND_CREATED: _ClassVar[TweetEvent.Kind]
        KIND_DELETED: _ClassVar[TweetEvent.Kind]
        KIND_EDITED: _ClassVar[TweetEvent.Kind]
    KIND_UNSPECIFIED: TweetEvent.Kind
    KIND_CREATED: TweetEvent.Kind
    KIND_DELETED: TweetEvent.Kind
    KIND_EDITED: TweetEvent.Kind
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    RETWEET_OF_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    MENTIONED_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    MEDIA_IDS_FIELD_NUMBER: _ClassVar[int]
    QUOTE_TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    HASHTAGS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_HASHTAGS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_MENTIONED_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    RETWEET_OF_AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    author_id: str
    create_time: _timestamp_pb2.Timestamp
    reply_to_tweet_id: str
    kind: TweetEvent.Kind
    reply_to_author_id: str
    retweet_of_tweet_id: str
    mentioned_user_ids: _containers.RepeatedScalarFieldContainer[str]
    public: bool
    media_ids: _containers.RepeatedScalarFieldContainer[str]
    quote_tweet_id: str
    hashtags: _containers.RepeatedScalarFieldContainer[str]
    previous_hashtags: _containers.RepeatedScalarFieldContainer[str]
    previous_mentioned_user_ids: _containers.RepeatedScalarFieldContainer[str]
    retweet_of_author_id: str
    def __init__(self, tweet_id: _Optional[str] = ..., author_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to_tweet_id: _Optional[str] = ..., kind: _Optional[_Union[TweetEvent.Kind, str]] = ..., reply_to_author_id: _Optional[str] = ..., retweet_of_tweet_id: _Optional[str] = ..., mentioned_user_ids: _Optional[_Iterable[str]] = ..., public: _Optional[bool] = ..., media_ids: _Optional[_Iterable[str]] = ..., quote_tweet_id: _Optional[str] = ..., hashtags: _Optional[_Iterable[str]] = ..., previous_hashtags: _Optional[_Iterable[str]] = ..., previous_mentioned_user_ids: _Optional[_Iterable[str]] = ..., retweet_of_author_id: _Optional[str] = ...) -> None: ...

class LikeEvent(_message.Message):
    __slots__ = ("tweet_id", "user_id", "author_id", "like_id", "liked", "event_time")
    TWEET_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    LIKE_ID_FIELD_NUMBER: _ClassVar[int]
    LIKED_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    tweet_id: str
    user_id: str
    author_id: str
    like_id: str
    liked: bool
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, tweet_id: _Optional[str] = ..., user_id: _Optional[str] = ..., author_id: _Optional[str] = ..., like_id: _Optional[str] = ..., liked: _Optional[bool] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
