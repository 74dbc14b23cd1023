"""The mail outbox on real PostgreSQL with the mesh's local SMTP server: a mail queued in a
transaction exists only if it commits; relays on two connections never claim the same mail; an
SMTP outage leaves the mail queued with its error and it is sent once the server is back; a sent
or abandoned mail keeps no message body (it may hold a token)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from devstack.mesh import ROOT, Mesh
from devstack.smtp import read_mails
from mail.addresses import parse_email_address
from mail.messages import verification_mail
from mail.outbox import MailRelay, RelayReport, RetryPolicy
from mail.postgres import PostgresMailQueue, enqueue
from mail.settings import MailSettings
from mail.smtp import PermanentMailError, SmtpSender, parse_smtp_url
from mail.tokens import TokenPurpose, issue_token

OUTBOX_MIGRATION = ROOT / "users_svc" / "migrations" / "0003_mail_outbox.sql"


@pytest.fixture
async def pool(mesh: Mesh) -> AsyncIterator[AsyncConnectionPool]:
    """A pool on a scratch schema holding the mail_outbox table, as users_svc's migration makes it."""
    schema = f"mail_test_{secrets.token_hex(4)}"
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path = {schema}")
        conn.execute(OUTBOX_MIGRATION.read_bytes())
    pool = AsyncConnectionPool(
        mesh.database_url, kwargs={"options": f"-c search_path={schema}", "autocommit": True}, open=False
    )
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()
        with psycopg.connect(mesh.database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def settings(mesh: Mesh) -> MailSettings:
    return MailSettings.from_env({"SMTP_URL": mesh.smtp_url})


async def queue_verification(
    pool: AsyncConnectionPool, mesh: Mesh, typed: str, *, commit: bool = True
) -> str:
    """Queues a verification mail to `typed` in a transaction (rolled back unless `commit`); the token."""
    address = parse_email_address(typed)
    token = issue_token(TokenPurpose.VERIFY_EMAIL, 1, address.key, datetime.now(UTC))
    mail = verification_mail(settings(mesh), address, "ann", token.secret)
    async with pool.connection() as conn:
        try:
            async with conn.transaction(), conn.cursor() as cursor:
                await enqueue(cursor, mail, discard_time=token.record.expire_time)
                if not commit:
                    raise RuntimeError("the request failed after queueing its mail")
        except RuntimeError:
            pass
    return token.secret


async def outbox_rows(pool: AsyncConnectionPool) -> list[tuple[object, ...]]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT recipient, message IS NULL, attempts, last_error, sent_time IS NOT NULL,"
            " failed_time IS NOT NULL FROM mail_outbox ORDER BY id"
        )
        return await cursor.fetchall()


async def test_a_mail_exists_only_if_its_transaction_commits(pool: AsyncConnectionPool, mesh: Mesh) -> None:
    assert mesh.mail_dir is not None
    recipient = f"commit-{secrets.token_hex(4)}@example.com"
    await queue_verification(pool, mesh, recipient, commit=False)
    assert await outbox_rows(pool) == []

    token = await queue_verification(pool, mesh, recipient)
    relay = MailRelay(PostgresMailQueue(pool), SmtpSender(parse_smtp_url(mesh.smtp_url), timeout=5))
    assert await relay.relay_once() == RelayReport(claimed=1, sent=1)
    [mail] = read_mails(mesh.mail_dir, recipient)
    assert f"/verify?token={token}" in str(mail.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    # Sent: never again, and the token it carried is no longer in the database.
    assert await outbox_rows(pool) == [(recipient, True, 1, None, True, False)]
    assert await relay.relay_once() == RelayReport()


async def test_two_relays_never_claim_the_same_mail(pool: AsyncConnectionPool, mesh: Mesh) -> None:
    for n in range(30):
        await queue_verification(pool, mesh, f"race{n}@example.com")
    queue = PostgresMailQueue(pool)
    claims = await asyncio.gather(*(queue.claim_due(10, timedelta(minutes=5)) for _ in range(4)))
    claimed = [mail.mail_id for claim in claims for mail in claim]
    assert len(claimed) == len(set(claimed)) == 30
    assert all(mail.attempts == 1 for claim in claims for mail in claim)
    # Leased: nothing is due again until the lease ends.
    assert await queue.claim_due(10, timedelta(minutes=5)) == []


async def test_an_smtp_outage_delays_the_mail_and_it_is_sent_when_the_server_is_back(
    pool: AsyncConnectionPool, mesh: Mesh
) -> None:
    assert mesh.mail_dir is not None
    recipient = f"outage-{secrets.token_hex(4)}@example.com"
    await queue_verification(pool, mesh, recipient)
    quick = RetryPolicy(first_delay=timedelta(seconds=0.2), max_delay=timedelta(seconds=0.2))
    relay = MailRelay(
        PostgresMailQueue(pool), SmtpSender(parse_smtp_url(mesh.smtp_url), timeout=2), policy=quick
    )
    mesh.stop_dependency("smtp")
    try:
        assert await relay.relay_once() == RelayReport(claimed=1, retried=1)
        [(_, forgotten, attempts, error, sent, failed)] = await outbox_rows(pool)
        assert (forgotten, attempts, sent, failed) == (False, 1, False, False)
        assert "cannot be reached" in str(error)
    finally:
        mesh.start_dependency("smtp")
    await asyncio.sleep(0.2)  # the retry's delay
    assert await relay.relay_once() == RelayReport(claimed=1, sent=1)
    assert len(read_mails(mesh.mail_dir, recipient)) == 1
    assert await outbox_rows(pool) == [(recipient, True, 2, None, True, False)]


async def test_a_refused_recipient_is_given_up_with_the_reason_kept(
    pool: AsyncConnectionPool, mesh: Mesh
) -> None:
    await queue_verification(pool, mesh, "ann@example.com")

    class Refusing:
        async def send(self, sender: str, recipient: str, message: bytes) -> None:
            raise PermanentMailError("the server refused the recipient: 550 no such user")

    assert await MailRelay(PostgresMailQueue(pool), Refusing()).relay_once() == RelayReport(
        claimed=1, failed=1
    )
    rows = await outbox_rows(pool)
    assert rows == [
        ("ann@example.com", True, 1, "the server refused the recipient: 550 no such user", False, True)
    ]
