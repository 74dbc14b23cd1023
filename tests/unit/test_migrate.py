"""Migrations are found by convention: each service's `migrations/` folder builds the schema named
after it, after the kit's own (the outbox); a new service needs no change to the kit."""

from __future__ import annotations

from meshkit.migrate import KIT_MIGRATIONS, ROOT, SCHEMAS


def test_each_service_with_migrations_builds_its_own_schema_after_the_kits() -> None:
    assert SCHEMAS == {
        "users": [KIT_MIGRATIONS, ROOT / "users_svc" / "migrations"],
        "tweets": [KIT_MIGRATIONS, ROOT / "tweets_svc" / "migrations"],
        "media": [KIT_MIGRATIONS, ROOT / "media_svc" / "migrations"],
        "notifications": [KIT_MIGRATIONS, ROOT / "notifications_svc" / "migrations"],
    }
    assert all(any(folder.glob("*.sql")) for folders in SCHEMAS.values() for folder in folders)
