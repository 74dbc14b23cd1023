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
