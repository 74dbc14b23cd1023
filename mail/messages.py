"""The mails the service sends, in one place: their texts, their links and how they are composed.

Each mail is plain text with a simple HTML alternative. A link is `<PUBLIC_BASE_URL><path>?token=`
with the token as issued (URL-safe already); it is the only place a token is ever written.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from mail.addresses import EmailAddress
from mail.settings import MailSettings
from mail.tokens import LIFETIMES, TokenPurpose

VERIFY_PATH = "/verify"
RESET_PATH = "/reset-password"


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A composed mail and its envelope: what the outbox stores and the sender sends."""

    sender: str
    recipient: str
    message: EmailMessage

    def as_bytes(self) -> bytes:
        """The message as sent (CRLF line ends, long headers folded for SMTP)."""
        return self.message.as_bytes(policy=SMTP)


@dataclass(frozen=True, slots=True)
class _Text:
    subject: str
    lead: str  # what happened, one sentence
    action: str  # what the link does
    unasked: str  # what to do if you did not ask for it


_TEXTS = {
    TokenPurpose.VERIFY_EMAIL: _Text(
        subject="Confirm your email address for tweetmesh",
        lead="This address was given for the tweetmesh account @{handle}.",
        action="Confirm that it is yours",
        unasked="If you did not sign up, ignore this mail: the address will not be used.",
    ),
    TokenPurpose.RESET_PASSWORD: _Text(
        subject="Reset your tweetmesh password",
        lead="Someone asked to reset the password of the tweetmesh account @{handle}.",
        action="Choose a new password",
        unasked="If it was not you, ignore this mail: your password stays as it is.",
    ),
}
_PATHS = {TokenPurpose.VERIFY_EMAIL: VERIFY_PATH, TokenPurpose.RESET_PASSWORD: RESET_PATH}


def token_link(settings: MailSettings, purpose: TokenPurpose, token: str) -> str:
    """The link that carries a token: `<public base url>/verify?token=...` and so on."""
    return f"{settings.public_base_url}{_PATHS[purpose]}?token={token}"


def verification_mail(settings: MailSettings, to: EmailAddress, handle: str, token: str) -> OutgoingMail:
    """The mail asking `handle` to confirm `to`, with a verification token."""
    return token_mail(settings, TokenPurpose.VERIFY_EMAIL, to, handle, token)


def password_reset_mail(settings: MailSettings, to: EmailAddress, handle: str, token: str) -> OutgoingMail:
    """The mail with a link to choose a new password for `handle`."""
    return token_mail(settings, TokenPurpose.RESET_PASSWORD, to, handle, token)


def token_mail(
    settings: MailSettings,
    purpose: TokenPurpose,
    to: EmailAddress,
    handle: str,
    token: str,
    lifetime: timedelta | None = None,
) -> OutgoingMail:
    """The mail for a token of `purpose` (its lifetime defaults to the purpose's)."""
    text = _TEXTS[purpose]
    link = token_link(settings, purpose, token)
    lead = text.lead.format(handle=handle)
    valid = f"The link works once, within {_duration(lifetime or LIFETIMES[purpose])}."
    message = EmailMessage()
    message["Subject"] = text.subject
    message["From"] = settings.sender
    message["To"] = Address(username=to.local_part, domain=to.domain)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=settings.sender.domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    message.set_content(
        f"Hello,\n\n{lead}\n\n{text.action}:\n{link}\n\n{valid}\n{text.unasked}\n\n-- tweetmesh\n"
    )
    message.add_alternative(
        "<!doctype html>\n<html><body>\n"
        f"<p>Hello,</p>\n<p>{html.escape(lead)}</p>\n"
        f'<p><a href="{html.escape(link)}">{html.escape(text.action)}</a></p>\n'
        f"<p>{html.escape(valid)}<br>\n{html.escape(text.unasked)}</p>\n"
        "<p>&mdash; tweetmesh</p>\n</body></html>\n",
        subtype="html",
    )
    return OutgoingMail(settings.sender.addr_spec, to.address, message)


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"
