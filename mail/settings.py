"""The mail settings a service reads from its environment: SMTP_URL, MAIL_FROM, PUBLIC_BASE_URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from urllib.parse import urlsplit

from mail.addresses import InvalidEmailAddress, parse_email_address
from mail.smtp import SmtpTarget, SmtpUrlError, parse_smtp_url

# What `make run` starts (devstack.smtp), so a service run by hand next to it mails there too.
DEFAULT_SMTP_URL = "smtp://127.0.0.1:2525"
DEFAULT_MAIL_FROM = "tweetmesh <no-reply@tweetmesh.example.com>"
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8080"


class MailSettingsError(ValueError):
    """A mail setting is malformed; the message names the variable and what it expects."""


@dataclass(frozen=True, slots=True)
class MailSettings:
    smtp: SmtpTarget
    # The From of every mail, and its address the envelope sender (where bounces go).
    sender: Address
    # Where people open the links in mails: `<public_base_url>/verify?token=...`. No final slash.
    public_base_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MailSettings:
        try:
            smtp = parse_smtp_url(env.get("SMTP_URL") or DEFAULT_SMTP_URL)
        except SmtpUrlError as error:
            raise MailSettingsError(str(error)) from None
        return cls(
            smtp=smtp,
            sender=_sender(env.get("MAIL_FROM") or DEFAULT_MAIL_FROM),
            public_base_url=_base_url(env.get("PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL),
        )


def _sender(text: str) -> Address:
    name, address = parseaddr(text)
    if not address:
        raise MailSettingsError(f"MAIL_FROM must be an address or 'Name <address>', got {text!r}")
    try:
        valid = parse_email_address(address)
    except InvalidEmailAddress as error:
        raise MailSettingsError(f"MAIL_FROM: {error.reason}") from None
    return Address(display_name=name, username=valid.local_part, domain=valid.domain)


def _base_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise MailSettingsError(f"PUBLIC_BASE_URL must be an http(s) URL without query, got {text!r}")
    return text.rstrip("/")
