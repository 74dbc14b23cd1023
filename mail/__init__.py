"""Mail for accounts: address rules, single-use tokens, the mails' texts, SMTP sending and the outbox.

What others import is named here; mail.postgres (the outbox table and its queue) is imported by
the service that owns the table.
"""

from mail.addresses import EmailAddress, InvalidEmailAddress, parse_email_address
from mail.messages import OutgoingMail, password_reset_mail, token_link, token_mail, verification_mail
from mail.outbox import MailQueue, MailRelay, MailTransport, QueuedMail, RelayReport, RetryPolicy
from mail.settings import MailSettings, MailSettingsError
from mail.smtp import (
    MailDeliveryError,
    PermanentMailError,
    Security,
    SmtpSender,
    SmtpTarget,
    SmtpUrlError,
    TransientMailError,
    parse_smtp_url,
)
from mail.tokens import (
    IssuedToken,
    TokenPurpose,
    TokenRecord,
    TokenRefusal,
    TokenRefused,
    check_token,
    issue_token,
    token_hash,
)

__all__ = [
    "EmailAddress",
    "InvalidEmailAddress",
    "IssuedToken",
    "MailDeliveryError",
    "MailQueue",
    "MailRelay",
    "MailSettings",
    "MailSettingsError",
    "MailTransport",
    "OutgoingMail",
    "PermanentMailError",
    "QueuedMail",
    "RelayReport",
    "RetryPolicy",
    "Security",
    "SmtpSender",
    "SmtpTarget",
    "SmtpUrlError",
    "TokenPurpose",
    "TokenRecord",
    "TokenRefusal",
    "TokenRefused",
    "TransientMailError",
    "check_token",
    "issue_token",
    "parse_email_address",
    "parse_smtp_url",
    "password_reset_mail",
    "token_hash",
    "token_link",
    "token_mail",
    "verification_mail",
]
