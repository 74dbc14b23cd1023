"""Time-ordered 64-bit ids: milliseconds since an epoch in the high bits, a sequence in the low 22.

Ids are made by PostgreSQL (`tm_next_id`, installed by meshkit.migrate) so that every writer of a
table shares one sequence and ids never collide across processes. This module reads them back and
renders them: on the wire an id is its decimal string, always 19 digits for the next ~50 years,
so that ordering the strings orders the ids (home timelines in Redis rely on it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from meshkit.errors import InvalidArgument

# Twitter's snowflake epoch (2010-11-04T01:42:54.657Z): ids today are 19 digits long and stay so
# until 2080, which keeps the decimal strings fixed-width.
EPOCH_MS = 1288834974657
SEQUENCE_BITS = 22
MAX_ID = 2**63 - 1

SQL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION public.tm_next_id(seq regclass) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
  SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - {EPOCH_MS}) << {SEQUENCE_BITS})
         | (nextval(seq) % {2**SEQUENCE_BITS})
$$;
"""


def time_of(ident: int) -> datetime:
    """When an id was made."""
    return datetime.fromtimestamp(((ident >> SEQUENCE_BITS) + EPOCH_MS) / 1000, tz=UTC)


def id_at(moment: datetime) -> int:
    """The smallest id that could have been made at `moment`."""
    return (int(moment.timestamp() * 1000) - EPOCH_MS) << SEQUENCE_BITS


def ms_delta(milliseconds: int) -> int:
    """How far apart two ids made `milliseconds` apart are."""
    return milliseconds << SEQUENCE_BITS


def parse_id(value: str, field: str, *, required: bool = True) -> int | None:
    """The integer id of a wire id, or INVALID_ARGUMENT naming `field`."""
    if value == "":
        if required:
            raise InvalidArgument.field(field, "is required")
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_ID:
        raise InvalidArgument.field(field, f"must be a decimal id, got {value[:40]!r}")
    return int(value)


def require_id(value: str, field: str) -> int:
    parsed = parse_id(value, field)
    assert parsed is not None
    return parsed
