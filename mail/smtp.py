"""Sending one composed mail over SMTP (`SMTP_URL`), and telling a failure worth retrying from a
final one.

`SMTP_URL` forms:

- `smtp://host:port`: plain SMTP (default port 25), no TLS; credentials only to a loopback host;
- `smtps://host:port`: TLS from the first byte (implicit TLS, default port 465);
- `smtp+starttls://host:port`: plain, then STARTTLS before anything else (default port 587);
  the server must offer it.

`user:password@` (percent-encoded) before the host signs in with AUTH. Certificates are verified
against the system's CAs unless an `ssl.SSLContext` is given.

A failure is transient (retry later: the server cannot be reached, times out, or answers 4xx; or
it refuses our credentials, our sender address or TLS, which an operator fixes without the mail
being at fault) or permanent (the server answers 5xx for the recipient or the message itself:
retrying would get the same answer).
"""

from __future__ import annotations

import enum
import ipaddress
import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import aiosmtplib


class SmtpUrlError(ValueError):
    """SMTP_URL is malformed; the message says what is expected."""


class MailDeliveryError(Exception):
    """A mail was not sent; `permanent` says whether trying again can help, `reason` says why."""

    permanent = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientMailError(MailDeliveryError):
    """Try again later: the server is unreachable, slow, busy (4xx) or refuses our configuration."""


class PermanentMailError(MailDeliveryError):
    """Give up: the server refused this recipient or this message for good (5xx)."""

    permanent = True


class Security(enum.Enum):
    NONE = "smtp"
    TLS = "smtps"
    STARTTLS = "smtp+starttls"


_DEFAULT_PORTS = {Security.NONE: 25, Security.TLS: 465, Security.STARTTLS: 587}


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to send: what SMTP_URL says."""

    host: str
    port: int
    security: Security = Security.NONE
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        """The URL without the password, for logs and the console."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.security.value}://{user}{host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """The SmtpTarget of an SMTP_URL; raises SmtpUrlError naming what is wrong (never the password)."""
    parts = urlsplit(url.strip())
    try:
        security = Security(parts.scheme.lower())
    except ValueError:
        raise SmtpUrlError("SMTP_URL must start with smtp://, smtps:// or smtp+starttls://") from None
    try:
        port = parts.port or _DEFAULT_PORTS[security]
    except ValueError:
        raise SmtpUrlError("SMTP_URL has a port that is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise SmtpUrlError("SMTP_URL names no host (smtp://host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SmtpUrlError("SMTP_URL takes no path, query or fragment (smtp://user:password@host:port)")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise SmtpUrlError("SMTP_URL has a password but no user name")
    if username and security is Security.NONE and not _is_loopback(parts.hostname):
        raise SmtpUrlError("SMTP_URL sends credentials in clear: use smtps:// or smtp+starttls://")
    return SmtpTarget(parts.hostname, port, security, username, password)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class SmtpSender:
    """Sends one mail per connection to one SMTP server; every step within `timeout` seconds."""

    def __init__(
        self, target: SmtpTarget, *, timeout: float = 10.0, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self._target = target
        self._timeout = timeout
        self._tls_context = tls_context

    @property
    def target(self) -> SmtpTarget:
        return self._target

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Sends `message` (RFC 5322 bytes) from envelope `sender` to `recipient`; raises
        TransientMailError or PermanentMailError when the server did not take it."""
        target = self._target
        try:
            await aiosmtplib.send(
                message,
                sender=sender,
                recipients=[recipient],
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                use_tls=target.security is Security.TLS,
                start_tls=target.security is Security.STARTTLS,
                tls_context=self._tls_context,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as error:  # timeouts are OSErrors too
            raise delivery_error(error) from error


def delivery_error(error: BaseException) -> MailDeliveryError:
    """What a failed send means: permanent for a 5xx refusal of the recipient or of the message,
    transient for everything else (unreachable, timeouts, 4xx, our credentials, sender or TLS)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        error = error.recipients[0]
    if isinstance(error, aiosmtplib.SMTPRecipientRefused):
        return _by_code(error, f"the server refused the recipient: {error.code} {error.message}")
    if isinstance(error, aiosmtplib.SMTPDataError):
        return _by_code(error, f"the server refused the message: {error.code} {error.message}")
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return TransientMailError(f"the server refused our credentials: {error.code} {error.message}")
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        return TransientMailError(f"the server refused our sender address: {error.code} {error.message}")
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return TransientMailError(f"the server answered {error.code} {error.message}")
    if isinstance(error, TimeoutError):
        return TransientMailError("the server did not answer in time")
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return TransientMailError(f"TLS with the server failed: {error}")
    if isinstance(error, OSError):
        return TransientMailError(f"the server cannot be reached: {error}")
    return TransientMailError(f"SMTP failed: {error}")


def _by_code(error: aiosmtplib.SMTPResponseException, reason: str) -> MailDeliveryError:
    return PermanentMailError(reason) if 500 <= error.code < 600 else TransientMailError(reason)
