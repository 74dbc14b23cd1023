"""tweetmesh-client: a typed async client of tweetmesh's public gRPC API (through Envoy).

async with Client("127.0.0.1:8080") as client:
    await client.login("alice", "correct horse")
    async for event in client.stream_home(): ...
"""

from tweetmesh_client.client import Client
from tweetmesh_client.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TweetmeshError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

__all__ = [
    "AlreadyExists",
    "Client",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "TweetmeshError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]
