from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetFanoutStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamStats(_message.Message):
    __slots__ = ("stream", "length", "pending", "lag", "consumers")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    stream: str
    length: int
    pending: int
    lag: int
    consumers: int
    def __init__(self, stream: _Optional[str] = ..., length: _Optional[int] = ..., pending: _Optional[int] = ..., lag: _Optional[int] = ..., consumers: _Optional[int] = ...) -> None: ...

class GetFanoutStatsResponse(_message.Message):
    __slots__ = ("streams", "delivered", "dead_lettered")
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[StreamStats]
    delivered: int
    dead_lettered: int
    def __init__(self, streams: _Optional[_Iterable[_Union[StreamStats, _Mapping]]] = ..., delivered: _Optional[int] = ..., dead_lettered: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("stream", "page_size", "page_token")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    stream: str
    page_size: int
    page_token: str
    def __init__(self, stream: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("stream", "dead_letter_id", "entry_id", "reason", "data", "event")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    stream: str
    dead_letter_id: str
    entry_id: str
    reason: str
    data: bytes
    event: str
    def __init__(self, stream: _Optional[str] = ..., dead_letter_id: _Optional[str] = ..., entry_id: _Optional[str] = ..., reason: _Optional[str] = ..., data: _Optional[bytes] = ..., event: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "next_page_token")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    next_page_token: str
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("stream", "dead_letter_ids", "all")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    stream: str
    dead_letter_ids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    def __init__(self, stream: _Optional[str] = ..., dead_letter_ids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("replayed",)
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    replayed: int
    def __init__(self, replayed: _Optional[int] = ...) -> None: ...
