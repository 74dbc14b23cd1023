"""media_svc's settings: the kit's, and what media_svc alone reads (README, "Configuration")."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from meshkit.settings import (
    Env,
    Networks,
    Rate,
    Settings,
    read_database_url,
    read_trusted_proxies,
    setting,
)
from social.limits import ClientRates
from social.services import DEFAULT_PORTS, read_tweets_addr, read_users_addr

SERVICE = "media"


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaRates(ClientRates):
    """Downloads draw from the shared read budget. Uploads are the costliest writes (a decode, a
    re-encode, megabytes stored): far fewer than other writes. An address gets several accounts'
    worth (NAT)."""

    upload_per_user: Rate = Rate(60, 3600)
    upload_per_address: Rate = Rate(300, 3600)


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadCaps:
    """Downloads (streams of 1 MiB messages) open at once in one media_svc process
    (MEDIA_DOWNLOADS_MAX_PER_ADDRESS, MEDIA_DOWNLOADS_MAX_PER_PROCESS): a page of a timeline asks
    for a few dozen thumbnails at once, an address may be many people (NAT)."""

    streams_per_address: int = 200
    streams_per_process: int = 2000


def read_download_caps(env: Env) -> DownloadCaps:
    defaults = DownloadCaps()
    return DownloadCaps(
        streams_per_address=env.integer(
            "MEDIA_DOWNLOADS_MAX_PER_ADDRESS", defaults.streams_per_address, minimum=1
        ),
        streams_per_process=env.integer(
            "MEDIA_DOWNLOADS_MAX_PER_PROCESS", defaults.streams_per_process, minimum=1
        ),
    )


def _consumer(env: Env) -> str:
    """This process's name in the consumer group of the tweets' events: unique unless set."""
    return env.text("MEDIA_CONSUMER", "") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSettings(Settings):
    # An upload is received whole, then decoded and re-encoded: a 40-megapixel image takes seconds
    # of CPU, more under load, so media's calls get longer than the kit's 8 s.
    handler_timeout_seconds: float = setting(
        lambda env: env.number("HANDLER_TIMEOUT_SECONDS", 60.0, minimum=0.1)
    )
    database_url: str = setting(read_database_url)
    users_addr: str = setting(read_users_addr)
    tweets_addr: str = setting(read_tweets_addr)
    # Empty: the local directory media_dir. Else s3://BUCKET[/PREFIX][?endpoint=URL][&region=R].
    media_s3_url: str = setting(lambda env: env.text("MEDIA_S3_URL", ""))
    media_dir: str = setting(lambda env: env.text("MEDIA_DIR", "") or ".data/media")
    # How many uploads are decoded at once (each holds its image in memory); the rest wait.
    media_inspect_concurrency: int = setting(
        lambda env: env.integer("MEDIA_INSPECT_CONCURRENCY", 2, minimum=1)
    )
    # Media attached to no tweet this long after its upload is deleted (and its blobs).
    media_unattached_seconds: float = setting(
        lambda env: env.number("MEDIA_UNATTACHED_SECONDS", 24 * 3600.0, minimum=1.0)
    )
    media_sweep_seconds: float = setting(lambda env: env.number("MEDIA_SWEEP_SECONDS", 60.0, minimum=0.05))
    # How long a tweet being posted holds its media from the sweeper (far longer than any post takes).
    media_claim_seconds: float = setting(lambda env: env.number("MEDIA_CLAIM_SECONDS", 3600.0, minimum=1.0))
    media_consumer: str = setting(_consumer)
    rate_limits: MediaRates = setting(lambda env: env.rates(MediaRates()))
    download_caps: DownloadCaps = setting(read_download_caps)
    trusted_proxies: Networks = setting(read_trusted_proxies)


def load_settings(env: Mapping[str, str] | None = None) -> MediaSettings:
    """media_svc's settings from `env` (os.environ)."""
    return MediaSettings.load(SERVICE, DEFAULT_PORTS[SERVICE], env)
