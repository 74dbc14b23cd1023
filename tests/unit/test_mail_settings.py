"""SMTP_URL, MAIL_FROM and PUBLIC_BASE_URL as read from the environment; how SMTP failures are
classified; and the mails' texts and links."""

from __future__ import annotations

from datetime import timedelta

import aiosmtplib
import pytest

from mail.addresses import parse_email_address
from mail.messages import password_reset_mail, token_link, token_mail, verification_mail
from mail.settings import MailSettings, MailSettingsError
from mail.smtp import (
    PermanentMailError,
    Security,
    SmtpTarget,
    SmtpUrlError,
    TransientMailError,
    delivery_error,
    parse_smtp_url,
)
from mail.tokens import TokenPurpose


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://127.0.0.1:2525", SmtpTarget("127.0.0.1", 2525)),
        ("smtp://mail.example.com", SmtpTarget("mail.example.com", 25)),
        ("smtps://mail.example.com", SmtpTarget("mail.example.com", 465, Security.TLS)),
        ("SMTP+STARTTLS://mail.example.com", SmtpTarget("mail.example.com", 587, Security.STARTTLS)),
        (
            "smtp+starttls://me%40example.com:p%40ss%3Aword@mail.example.com:2587/",
            SmtpTarget("mail.example.com", 2587, Security.STARTTLS, "me@example.com", "p@ss:word"),
        ),
        ("smtp://dev:pw@localhost:2525", SmtpTarget("localhost", 2525, Security.NONE, "dev", "pw")),
        ("smtps://[::1]:4650", SmtpTarget("::1", 4650, Security.TLS)),
    ],
)
def test_smtp_urls(url: str, target: SmtpTarget) -> None:
    assert parse_smtp_url(url) == target


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://mail.example.com", "must start with smtp://"),
        ("mail.example.com:25", "must start with smtp://"),
        ("smtp://", "names no host"),
        ("smtp://mail.example.com:99999", "port"),
        ("smtp://mail.example.com:abc", "port"),
        ("smtp://mail.example.com/inbox", "no path"),
        ("smtp://mail.example.com?tls=1", "no path, query"),
        ("smtps://:secret@mail.example.com", "a password but no user name"),
        ("smtp://me:secret@mail.example.com", "credentials in clear"),
    ],
)
def test_bad_smtp_urls_are_refused_without_echoing_the_password(url: str, complaint: str) -> None:
    with pytest.raises(SmtpUrlError, match=complaint) as refused:
        parse_smtp_url(url)
    assert "secret" not in str(refused.value)


def test_the_target_prints_without_its_password() -> None:
    target = parse_smtp_url("smtps://relay:hunter2@mail.example.com")
    assert str(target) == "smtps://relay@mail.example.com:465"
    assert "hunter2" not in repr(target)


def test_mail_settings_defaults_and_validation() -> None:
    defaults = MailSettings.from_env({})
    assert defaults.smtp == SmtpTarget("127.0.0.1", 2525)
    assert defaults.sender.addr_spec == "no-reply@tweetmesh.example.com"
    assert defaults.public_base_url == "http://127.0.0.1:8080"
    custom = MailSettings.from_env(
        {"MAIL_FROM": "Tweet Mesh <Hello@Example.COM>", "PUBLIC_BASE_URL": "https://tm.example.com/app/"}
    )
    assert (custom.sender.display_name, custom.sender.addr_spec) == ("Tweet Mesh", "Hello@example.com")
    assert custom.public_base_url == "https://tm.example.com/app"
    for env, variable in [
        ({"SMTP_URL": "ftp://x"}, "SMTP_URL"),
        ({"MAIL_FROM": "not an address"}, "MAIL_FROM"),
        ({"MAIL_FROM": "me@localhost"}, "MAIL_FROM"),
        ({"PUBLIC_BASE_URL": "tm.example.com"}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": "https://tm.example.com/?a=b"}, "PUBLIC_BASE_URL"),
    ]:
        with pytest.raises(MailSettingsError, match=variable):
            MailSettings.from_env(env)


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@b.c")]),
         PermanentMailError, "refused the recipient: 550 no such user"),
        (aiosmtplib.SMTPRecipientRefused(553, "bad mailbox name", "a@b.c"), PermanentMailError, "553"),
        (aiosmtplib.SMTPRecipientRefused(450, "mailbox busy", "a@b.c"), TransientMailError, "450"),
        (aiosmtplib.SMTPDataError(554, "rejected as spam"), PermanentMailError, "refused the message: 554"),
        (aiosmtplib.SMTPDataError(451, "try again"), TransientMailError, "451"),
        # Our configuration, not the mail: retried until an operator fixes it.
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), TransientMailError, "credentials"),
        (aiosmtplib.SMTPSenderRefused(550, "not our domain", "x@y.z"), TransientMailError, "sender address"),
        (aiosmtplib.SMTPConnectResponseError(554, "go away"), TransientMailError, "554"),
        (aiosmtplib.SMTPNotSupported("STARTTLS extension not supported"), TransientMailError, "STARTTLS"),
        (aiosmtplib.SMTPConnectError("Error connecting"), TransientMailError, "cannot be reached"),
        (aiosmtplib.SMTPServerDisconnected("gone"), TransientMailError, "cannot be reached"),
        (ConnectionRefusedError(111, "Connection refused"), TransientMailError, "cannot be reached"),
        (aiosmtplib.SMTPReadTimeoutError("Timed out"), TransientMailError, "did not answer in time"),
        (TimeoutError(), TransientMailError, "did not answer in time"),
    ],
)  # fmt: skip
def test_failures_are_classified(error: BaseException, kind: type, words: str) -> None:
    classified = delivery_error(error)
    assert type(classified) is kind
    assert classified.permanent is (kind is PermanentMailError)
    assert words in classified.reason


SETTINGS = MailSettings.from_env({"PUBLIC_BASE_URL": "https://tm.example.com"})
ANN = parse_email_address("Ann@Example.com")
TOKEN = "A" * 43


def test_links_carry_the_token_under_the_public_base_url() -> None:
    assert (
        token_link(SETTINGS, TokenPurpose.VERIFY_EMAIL, TOKEN)
        == f"https://tm.example.com/verify?token={TOKEN}"
    )
    assert token_link(SETTINGS, TokenPurpose.RESET_PASSWORD, TOKEN) == (
        f"https://tm.example.com/reset-password?token={TOKEN}"
    )


@pytest.mark.parametrize(
    ("compose", "subject", "path", "lifetime"),
    [
        (verification_mail, "Confirm your email address for tweetmesh", "/verify", "3 days"),
        (password_reset_mail, "Reset your tweetmesh password", "/reset-password", "1 hour"),
    ],
)
def test_each_mail_has_plain_text_and_html_with_its_link(
    compose: type, subject: str, path: str, lifetime: str
) -> None:
    mail = compose(SETTINGS, ANN, "ann", TOKEN)
    assert (mail.sender, mail.recipient) == ("no-reply@tweetmesh.example.com", "Ann@example.com")
    message = mail.message
    assert message["Subject"] == subject
    assert message["To"] == "Ann@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@tweetmesh.example.com>")
    link = f"https://tm.example.com{path}?token={TOKEN}"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    assert link in plain.get_content() and "@ann" in plain.get_content()
    assert f'href="{link}"' in html.get_content()
    assert f"within {lifetime}" in plain.get_content()
    assert b"\r\n" in mail.as_bytes() and b"\n\n" not in mail.as_bytes().replace(b"\r\n", b"")


def test_html_is_escaped_and_the_lifetime_is_said() -> None:
    mail = token_mail(SETTINGS, TokenPurpose.VERIFY_EMAIL, ANN, "<b>x</b>", TOKEN, timedelta(minutes=30))
    html = mail.message.get_body(("html",))
    assert html is not None
    assert "<b>x</b>" not in html.get_content() and "&lt;b&gt;" in html.get_content()
    plain = mail.message.get_body(("plain",))
    assert plain is not None and "within 30 minutes" in plain.get_content()
