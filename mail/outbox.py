"""The mail outbox: a mail is queued in the transaction that asks for it and sent afterwards by a
background relay, so a committed request's mail is never lost and a mail server outage delays
mail without failing any request.

The relay claims due mails (`MailQueue.claim_due`: FOR UPDATE SKIP LOCKED in PostgreSQL, so
several replicas share the work, each mail leased to one of them for `lease`), sends each, then
marks it sent, schedules a retry with exponential backoff (transient failure) or gives up and
records why (permanent failure, or still failing when it is too late to matter). A relay that dies
mid-send leaves its mails leased: they are due again when the lease ends, so a mail may be sent
twice but never lost (at least once). The storage is a Protocol, so the rules here are tested on
an in-memory queue; mail.postgres is the PostgreSQL one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import Counter

from mail.smtp import MailDeliveryError, TransientMailError
from meshkit.metrics import REGISTRY

log = logging.getLogger(__name__)

MAILS_SETTLED = Counter(
    "tweetmesh_mail_attempts",
    "Attempts to send a mail by their outcome: sent, retried (a transient failure) or failed (given up).",
    ["outcome"],
    registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class QueuedMail:
    """A mail waiting in the outbox, as claimed: `attempts` counts this one."""

    mail_id: int
    sender: str
    recipient: str
    message: bytes
    attempts: int
    create_time: datetime
    # Past this it is no use sending (the token in it has expired): give up instead.
    discard_time: datetime | None = None


class MailQueue(Protocol):
    """Where the outbox lives. Times are the store's own clock."""

    async def claim_due(self, limit: int, lease: timedelta) -> list[QueuedMail]:
        """Up to `limit` unsent mails whose next attempt is due, oldest due first, each counted as
        one more attempt and not due again for `lease` (so no other relay takes it meanwhile)."""
        ...

    async def mark_sent(self, mail_id: int) -> None:
        """Done: never sent again. The message body is forgotten (it may hold a token)."""
        ...

    async def retry_later(self, mail_id: int, delay: timedelta, error: str) -> None:
        """Due again after `delay`; `error` is kept as the last failure."""
        ...

    async def give_up(self, mail_id: int, error: str) -> None:
        """Never sent: `error` says why. The message body is forgotten."""
        ...


class MailTransport(Protocol):
    """What sends one mail (mail.smtp.SmtpSender)."""

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Raises MailDeliveryError (TransientMailError or PermanentMailError) when not sent."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits a random time up to
    min(max_delay, first_delay * 2**(n-1)), at least first_delay / 2; a mail still failing
    `give_up_after` its creation (or past its discard time) is given up."""

    first_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(days=2)
    # A number in [0, 1]: where between the floor and the ceiling a delay falls.
    draw: Callable[[], float] = random.random

    def delay(self, attempts: int) -> timedelta:
        """How long to wait after `attempts` failed attempts."""
        doublings = min(max(attempts - 1, 0), 32)
        ceiling: timedelta = min(self.max_delay, self.first_delay * (1 << doublings))
        floor = self.first_delay / 2
        return floor + (ceiling - floor) * self.draw() if ceiling > floor else ceiling


@dataclass(frozen=True, slots=True)
class RelayReport:
    """What one pass did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MailRelay:
    """Sends what the outbox holds: one pass with `relay_once`, or for good with `run`."""

    def __init__(
        self,
        queue: MailQueue,
        transport: MailTransport,
        *,
        batch: int = 20,
        concurrency: int = 4,
        send_timeout: timedelta = timedelta(seconds=30),
        lease: timedelta = timedelta(minutes=10),
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        # A lease shorter than a pass could hand a mail still being sent to another relay.
        longest_pass = send_timeout * math.ceil(batch / concurrency)
        if lease <= longest_pass:
            raise ValueError(f"lease {lease} must exceed the longest pass ({longest_pass})")
        self._queue = queue
        self._transport = transport
        self._batch = batch
        self._concurrency = asyncio.Semaphore(concurrency)
        self._send_timeout = send_timeout.total_seconds()
        self._lease = lease
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Start a pass now (a request just queued a mail) instead of at the next poll."""
        self._wake.set()

    async def relay_once(self) -> RelayReport:
        """Claims what is due and settles each mail; store errors propagate (nothing is lost: the
        mails claimed are due again when their lease ends)."""
        mails = await self._queue.claim_due(self._batch, self._lease)
        outcomes = await asyncio.gather(*(self._settle(mail) for mail in mails))
        for outcome in outcomes:
            MAILS_SETTLED.labels(outcome).inc()
        return RelayReport(
            claimed=len(mails),
            sent=outcomes.count("sent"),
            retried=outcomes.count("retried"),
            failed=outcomes.count("failed"),
        )

    async def run(self, poll_seconds: float = 5.0) -> None:
        """Relays until cancelled: again at once while passes find full batches, else after
        `poll_seconds` or a wake(). A failing store is logged and retried at the next poll."""
        while True:
            try:
                report = await self.relay_once()
            except Exception as error:  # a relay must outlive any failure of its store
                log.warning("mail relay pass failed; will retry", extra={"error": error})
                report = RelayReport()
            if report.claimed >= self._batch:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_seconds)

    async def _settle(self, mail: QueuedMail) -> str:
        now = self._clock()
        if mail.discard_time is not None and now >= mail.discard_time:
            await self._queue.give_up(mail.mail_id, "expired before it could be sent")
            log.warning("mail given up: expired", extra={"mail_id": mail.mail_id})
            return "failed"
        try:
            async with self._concurrency:
                await asyncio.wait_for(
                    self._transport.send(mail.sender, mail.recipient, mail.message), self._send_timeout
                )
        except TimeoutError:
            failure: MailDeliveryError = TransientMailError("sending took too long")
        except MailDeliveryError as error:
            failure = error
        else:
            await self._queue.mark_sent(mail.mail_id)
            log.info("mail sent", extra={"mail_id": mail.mail_id, "attempts": mail.attempts})
            return "sent"
        delay = self._policy.delay(mail.attempts)
        too_late = mail.create_time + self._policy.give_up_after
        if mail.discard_time is not None:
            too_late = min(too_late, mail.discard_time)
        if failure.permanent or now + delay >= too_late:
            await self._queue.give_up(mail.mail_id, failure.reason)
            log.warning(
                "mail given up",
                extra={"mail_id": mail.mail_id, "attempts": mail.attempts, "error": failure.reason},
            )
            return "failed"
        await self._queue.retry_later(mail.mail_id, delay, failure.reason)
        log.info(
            "mail send failed; will retry",
            extra={"mail_id": mail.mail_id, "attempts": mail.attempts, "error": failure.reason},
        )
        return "retried"
