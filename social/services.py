"""The services of the mesh: where each listens by default, and how its peers find it
(USERS_ADDR, TWEETS_ADDR, MEDIA_ADDR, NOTIFICATIONS_ADDR: host:port, or dns:///name:port to balance
over every address)."""

from __future__ import annotations

from meshkit.settings import Env, Ports

DEFAULT_PORTS = {
    "users": Ports(grpc=50051, metrics=9101),
    "tweets": Ports(grpc=50052, metrics=9102),
    "fanout": Ports(grpc=50053, metrics=9103),
    "timeline": Ports(grpc=50054, metrics=9104),
    "media": Ports(grpc=50055, metrics=9105),
    "notifications": Ports(grpc=50056, metrics=9106),
}


def read_users_addr(env: Env) -> str:
    return env.address("USERS_ADDR", DEFAULT_PORTS["users"].grpc)


def read_tweets_addr(env: Env) -> str:
    return env.address("TWEETS_ADDR", DEFAULT_PORTS["tweets"].grpc)


def read_media_addr(env: Env) -> str:
    return env.address("MEDIA_ADDR", DEFAULT_PORTS["media"].grpc)


def read_notifications_addr(env: Env) -> str:
    return env.address("NOTIFICATIONS_ADDR", DEFAULT_PORTS["notifications"].grpc)
