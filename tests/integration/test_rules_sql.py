"""The rules that SQL applies too (social.rules) give PostgreSQL's answer and Python's on the same
rows: every combination of author, replied-to author (none, the author, someone else) and retweet."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import psycopg

from devstack.mesh import Mesh
from social.rules import IS_FOR_EVERYONE_SQL, IS_PUBLIC_SQL, is_for_everyone, is_public

AUTHOR, SOMEONE_ELSE, ORIGINAL = 7, 8, 100


@dataclass(frozen=True, slots=True)
class Row:
    author_id: int
    reply_to_author_id: int | None
    retweet_of_tweet_id: int | None


ROWS = [
    Row(AUTHOR, replied, retweet)
    for replied, retweet in itertools.product((None, AUTHOR, SOMEONE_ELSE), (None, ORIGINAL))
]


def test_sql_and_python_agree_on_every_kind_of_tweet(mesh: Mesh) -> None:
    values = ", ".join(["(%s, %s::bigint, %s::bigint, %s::bigint)"] * len(ROWS))
    params = [
        v for i, r in enumerate(ROWS) for v in (i, r.author_id, r.reply_to_author_id, r.retweet_of_tweet_id)
    ]
    with psycopg.connect(mesh.database_url) as conn:
        answers = conn.execute(
            f"SELECT {IS_FOR_EVERYONE_SQL}, {IS_PUBLIC_SQL} FROM (VALUES {values})"
            " AS tweets (position, author_id, reply_to_author_id, retweet_of_id) ORDER BY position",
            params,
        ).fetchall()
    assert answers == [(is_for_everyone(r), is_public(r)) for r in ROWS]
    # Every answer occurs: the rows tell the rules apart.
    assert {a for a, _ in answers} == {True, False} and {p for _, p in answers} == {True, False}
