"""The mail relay's rules on an in-memory outbox: sent once, retried with backoff while failures
are transient, given up (with the reason kept) when permanent or too late, and a store failure
never stops it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from mail.outbox import MailRelay, QueuedMail, RelayReport, RetryPolicy
from mail.smtp import MailDeliveryError, PermanentMailError, TransientMailError

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Row:
    mail: QueuedMail
    due: datetime
    sent: bool = False
    failed: bool = False
    last_error: str | None = None


class MemoryQueue:
    """MailQueue in memory, on the test's clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[int, Row] = {}
        self.broken = False

    def add(self, recipient: str, *, discard_time: datetime | None = None) -> int:
        mail_id = len(self.rows) + 1
        mail = QueuedMail(
            mail_id, "no-reply@example.com", recipient, b"Subject: hi\r\n\r\nhi\r\n", 0, self.clock()
        )
        self.rows[mail_id] = Row(replace(mail, discard_time=discard_time), self.clock())
        return mail_id

    async def claim_due(self, limit: int, lease: timedelta) -> list[QueuedMail]:
        if self.broken:
            raise ConnectionError("the database is down")
        due = [r for r in self.rows.values() if not (r.sent or r.failed) and r.due <= self.clock()]
        claimed = []
        for row in sorted(due, key=lambda r: r.due)[:limit]:
            row.mail = replace(row.mail, attempts=row.mail.attempts + 1)
            row.due = self.clock() + lease
            claimed.append(row.mail)
        return claimed

    async def mark_sent(self, mail_id: int) -> None:
        self.rows[mail_id].sent = True

    async def retry_later(self, mail_id: int, delay: timedelta, error: str) -> None:
        self.rows[mail_id].due = self.clock() + delay
        self.rows[mail_id].last_error = error

    async def give_up(self, mail_id: int, error: str) -> None:
        self.rows[mail_id].failed = True
        self.rows[mail_id].last_error = error


class ScriptedTransport:
    """Fails each recipient with the errors listed for it, in order, then sends."""

    def __init__(self, failures: dict[str, list[MailDeliveryError | None]] | None = None) -> None:
        self.failures = failures or {}
        self.sent: list[str] = []
        self.sent_one = asyncio.Event()
        self.stall = False

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        if self.stall:
            await asyncio.sleep(3600)
        script = self.failures.get(recipient, [])
        failure = script.pop(0) if script else None
        if failure is not None:
            raise failure
        self.sent.append(recipient)
        self.sent_one.set()


NO_JITTER = RetryPolicy(first_delay=timedelta(seconds=30), max_delay=timedelta(minutes=8), draw=lambda: 1.0)


def relay(
    queue: MemoryQueue,
    transport: ScriptedTransport,
    clock: Clock,
    *,
    policy: RetryPolicy = NO_JITTER,
    batch: int = 20,
    concurrency: int = 4,
    send_timeout: timedelta = timedelta(seconds=30),
    lease: timedelta = timedelta(minutes=10),
) -> MailRelay:
    return MailRelay(
        queue,
        transport,
        clock=clock,
        policy=policy,
        batch=batch,
        concurrency=concurrency,
        send_timeout=send_timeout,
        lease=lease,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_mail_is_sent_once(clock: Clock) -> None:
    queue, transport = MemoryQueue(clock), ScriptedTransport()
    mail_id = queue.add("ann@example.com")
    assert await relay(queue, transport, clock).relay_once() == RelayReport(claimed=1, sent=1)
    assert queue.rows[mail_id].sent
    clock.now += timedelta(days=1)
    assert await relay(queue, transport, clock).relay_once() == RelayReport()
    assert transport.sent == ["ann@example.com"]


async def test_a_transient_failure_is_retried_later_with_growing_delays(clock: Clock) -> None:
    outage: list[MailDeliveryError | None] = [TransientMailError("the server cannot be reached")] * 4
    queue, transport = MemoryQueue(clock), ScriptedTransport({"ann@example.com": list(outage)})
    mail_id = queue.add("ann@example.com")
    relays = relay(queue, transport, clock)
    delays = []
    for _ in outage:
        before = clock.now
        assert await relays.relay_once() == RelayReport(claimed=1, retried=1)
        row = queue.rows[mail_id]
        assert row.last_error == "the server cannot be reached"
        delays.append(row.due - before)
        # Not due before its time...
        clock.now = row.due - timedelta(seconds=1)
        assert await relays.relay_once() == RelayReport()
        clock.now = row.due
    assert [d.total_seconds() for d in delays] == [30, 60, 120, 240]
    # ...and sent once the server is back.
    assert await relays.relay_once() == RelayReport(claimed=1, sent=1)
    assert queue.rows[mail_id].mail.attempts == 5
    assert transport.sent == ["ann@example.com"]


async def test_a_permanent_failure_is_given_up_with_its_reason(clock: Clock) -> None:
    refused = PermanentMailError("the server refused the recipient: 550 no such user")
    queue, transport = MemoryQueue(clock), ScriptedTransport({"nobody@example.com": [refused]})
    gone, fine = queue.add("nobody@example.com"), queue.add("ann@example.com")
    assert await relay(queue, transport, clock).relay_once() == RelayReport(claimed=2, sent=1, failed=1)
    assert queue.rows[gone].failed
    assert queue.rows[gone].last_error == "the server refused the recipient: 550 no such user"
    assert queue.rows[fine].sent


async def test_a_mail_past_its_discard_time_is_given_up_unsent(clock: Clock) -> None:
    queue, transport = MemoryQueue(clock), ScriptedTransport()
    mail_id = queue.add("ann@example.com", discard_time=START + timedelta(hours=1))
    clock.now += timedelta(hours=1)
    assert await relay(queue, transport, clock).relay_once() == RelayReport(claimed=1, failed=1)
    assert queue.rows[mail_id].last_error == "expired before it could be sent"
    assert transport.sent == []


async def test_a_retry_that_would_come_too_late_gives_up_instead(clock: Clock) -> None:
    down: list[MailDeliveryError | None] = [TransientMailError("the server cannot be reached")] * 100
    queue, transport = MemoryQueue(clock), ScriptedTransport({"ann@example.com": down})
    policy = RetryPolicy(first_delay=timedelta(minutes=1), give_up_after=timedelta(minutes=10))
    mail_id = queue.add("ann@example.com")
    relays = relay(queue, transport, clock, policy=policy)
    for _ in range(10):
        await relays.relay_once()
        row = queue.rows[mail_id]
        if row.failed:
            break
        clock.now = row.due
    assert queue.rows[mail_id].failed
    assert clock.now - START < timedelta(minutes=10)
    assert queue.rows[mail_id].last_error == "the server cannot be reached"


async def test_a_send_that_hangs_is_a_transient_failure(clock: Clock) -> None:
    queue, transport = MemoryQueue(clock), ScriptedTransport()
    transport.stall = True
    mail_id = queue.add("ann@example.com")
    relays = relay(queue, transport, clock, send_timeout=timedelta(seconds=0.05), lease=timedelta(seconds=60))
    assert await relays.relay_once() == RelayReport(claimed=1, retried=1)
    assert queue.rows[mail_id].last_error == "sending took too long"


async def test_claimed_mails_are_not_claimed_again_within_the_lease(clock: Clock) -> None:
    queue, transport = MemoryQueue(clock), ScriptedTransport()
    queue.add("ann@example.com")
    first = await queue.claim_due(10, timedelta(minutes=10))
    assert len(first) == 1
    # Another relay finds nothing while the first one holds it; it is due again after the lease
    # (the first relay died), with the attempt counted.
    assert await relay(queue, transport, clock).relay_once() == RelayReport()
    clock.now += timedelta(minutes=10)
    assert await relay(queue, transport, clock).relay_once() == RelayReport(claimed=1, sent=1)


def test_a_lease_shorter_than_a_pass_is_refused(clock: Clock) -> None:
    with pytest.raises(ValueError, match="lease"):
        relay(
            MemoryQueue(clock), ScriptedTransport(), clock, batch=8, concurrency=2, lease=timedelta(minutes=2)
        )


def test_backoff_doubles_up_to_its_ceiling_with_jitter_below() -> None:
    highest = RetryPolicy(first_delay=timedelta(seconds=30), max_delay=timedelta(minutes=4), draw=lambda: 1.0)
    assert [highest.delay(n).total_seconds() for n in range(1, 7)] == [30, 60, 120, 240, 240, 240]
    assert highest.delay(10_000) == timedelta(minutes=4)
    lowest = replace(highest, draw=lambda: 0.0)
    assert lowest.delay(3) == timedelta(seconds=15)
    spread = {RetryPolicy().delay(5) for _ in range(20)}
    assert len(spread) > 1 and all(timedelta(seconds=15) <= d <= timedelta(minutes=8) for d in spread)


async def test_the_relay_outlives_a_store_outage_and_wakes_on_demand(clock: Clock) -> None:
    queue, transport = MemoryQueue(clock), ScriptedTransport()
    queue.broken = True
    relays = relay(queue, transport, clock)
    running = asyncio.create_task(relays.run(poll_seconds=3600))
    try:
        await asyncio.sleep(0.05)  # a pass has failed; the relay waits for the next poll
        assert not running.done()
        queue.broken = False
        queue.add("ann@example.com")
        relays.wake()
        async with asyncio.timeout(5):
            await transport.sent_one.wait()
        assert transport.sent == ["ann@example.com"]
    finally:
        running.cancel()
