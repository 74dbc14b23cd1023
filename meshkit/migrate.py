"""Applies every service's schema migrations to DATABASE_URL: `python -m meshkit.migrate`.

Each service with a folder of numbered SQL files (`<name>_svc/migrations/NNNN_name.sql`) owns a
PostgreSQL schema named after it (users_svc: `users`). The kit's own files (meshkit/migrations,
e.g. the outbox) are applied to every schema first. Applied versions are recorded per schema in
`schema_migrations`; a run applies the missing ones in order, each in its own transaction, under an
advisory lock so concurrent runs are safe.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg

from meshkit.ids import SQL_FUNCTION
from meshkit.logs import describe

ROOT = Path(__file__).resolve().parent.parent
KIT_MIGRATIONS = ROOT / "meshkit" / "migrations"
# schema -> the folders whose migrations build it, in order.
SCHEMAS: dict[str, list[Path]] = {
    folder.parent.name.removesuffix("_svc"): [KIT_MIGRATIONS, folder]
    for folder in sorted(ROOT.glob("*_svc/migrations"))
}
_LOCK_KEY = 0x7477_6565_746D  # "tweetm"


def pending(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> list[tuple[str, Path]]:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations"
        " (version text PRIMARY KEY, apply_time timestamptz NOT NULL DEFAULT now())"
    )
    done = {row[0] for row in conn.execute(f"SELECT version FROM {schema}.schema_migrations")}
    todo = []
    for folder in SCHEMAS[schema]:
        for path in sorted(folder.glob("*.sql")):
            version = f"{folder.parent.name}/{path.stem}"
            if version not in done:
                todo.append((version, path))
    return todo


def migrate(database_url: str) -> list[str]:
    """Applies what is missing; returns the versions applied."""
    applied = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(SQL_FUNCTION)
            for schema in SCHEMAS:
                for version, path in pending(conn, schema):
                    with conn.transaction():
                        conn.execute(f"SET LOCAL search_path TO {schema}, public")
                        conn.execute(path.read_text().encode())
                        conn.execute(
                            f"INSERT INTO {schema}.schema_migrations (version) VALUES (%s)", (version,)
                        )
                    applied.append(f"{schema}:{version}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def main() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        sys.exit("meshkit.migrate: DATABASE_URL is not set")
    try:
        applied = migrate(url)
    except psycopg.Error as error:
        sys.exit(f"meshkit.migrate: {describe(error)}")
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


if __name__ == "__main__":
    main()
