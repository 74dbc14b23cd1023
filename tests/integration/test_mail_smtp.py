"""The SMTP sender against a real aiosmtpd server: a composed mail goes through the dev stack's
local server and is read back from its folder; an outage is a transient failure and the relay
sends the mail once the server is back; a 550 for the recipient is permanent; TLS (implicit and
STARTTLS) with AUTH works, and a certificate that is not trusted is a transient failure."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from devstack.mesh import free_port
from devstack.process import Server
from devstack.smtp import MailDrop, read_mails, start_smtp
from mail.addresses import parse_email_address
from mail.messages import OutgoingMail, verification_mail
from mail.outbox import MailRelay, RelayReport, RetryPolicy
from mail.settings import MailSettings
from mail.smtp import PermanentMailError, Security, SmtpSender, SmtpTarget, TransientMailError, parse_smtp_url
from mail.tokens import TokenPurpose, issue_token
from tests.unit.test_mail_relay import Clock, MemoryQueue

SETTINGS = MailSettings.from_env({"PUBLIC_BASE_URL": "https://tweetmesh.example.com"})


def mail_for(typed_address: str) -> tuple[OutgoingMail, str]:
    """A verification mail for `typed_address` and the token in it."""
    address = parse_email_address(typed_address)
    token = issue_token(TokenPurpose.VERIFY_EMAIL, 7, address.key, datetime.now(UTC))
    return verification_mail(SETTINGS, address, "ann", token.secret), token.secret


@pytest.fixture
def drop(tmp_path: Path) -> Iterator[Server]:
    server = start_smtp(tmp_path / "mail", free_port(), log_path=tmp_path / "smtp.log")
    try:
        yield server
    finally:
        server.process.stop()


async def test_a_mail_goes_through_the_local_server_and_is_read_back(drop: Server, tmp_path: Path) -> None:
    mail, token = mail_for("Ann.Lee@Example.com")
    await SmtpSender(parse_smtp_url(drop.url), timeout=5).send(mail.sender, mail.recipient, mail.as_bytes())

    [received] = read_mails(tmp_path / "mail", "ann.lee@example.com")  # the reader ignores case
    assert received["Delivered-To"] == "Ann.Lee@example.com"
    assert received["Return-Path"] == "<no-reply@tweetmesh.example.com>"
    assert received["To"] == "Ann.Lee@example.com"
    assert received["Subject"] == "Confirm your email address for tweetmesh"
    link = f"https://tweetmesh.example.com/verify?token={token}"
    text = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert text is not None and html is not None
    assert link in text.get_content()
    assert f'href="{link}"' in html.get_content()
    assert read_mails(tmp_path / "mail", "bob@example.com", at_least=0) == []


async def test_an_outage_is_transient_and_the_relay_sends_once_the_server_is_back(tmp_path: Path) -> None:
    port = free_port()
    sender = SmtpSender(parse_smtp_url(f"smtp://127.0.0.1:{port}"), timeout=2)
    mail, _ = mail_for("ann@example.com")
    with pytest.raises(TransientMailError, match="cannot be reached"):
        await sender.send(mail.sender, mail.recipient, mail.as_bytes())

    clock = Clock()
    queue = MemoryQueue(clock)
    mail_id = queue.add("ann@example.com")
    policy = RetryPolicy(first_delay=timedelta(seconds=30), draw=lambda: 1.0)
    relay = MailRelay(queue, sender, clock=clock, policy=policy, send_timeout=timedelta(seconds=5))
    assert await relay.relay_once() == RelayReport(claimed=1, retried=1)
    assert "cannot be reached" in str(queue.rows[mail_id].last_error)

    server = start_smtp(tmp_path / "mail", port)
    try:
        clock.now = queue.rows[mail_id].due
        assert await relay.relay_once() == RelayReport(claimed=1, sent=1)
        assert len(read_mails(tmp_path / "mail", "ann@example.com")) == 1
    finally:
        server.process.stop()


async def test_a_server_that_stops_mid_run_is_transient(drop: Server) -> None:
    sender = SmtpSender(parse_smtp_url(drop.url), timeout=2)
    mail, _ = mail_for("ann@example.com")
    await sender.send(mail.sender, mail.recipient, mail.as_bytes())
    drop.process.stop()
    with pytest.raises(TransientMailError):
        await sender.send(mail.sender, mail.recipient, mail.as_bytes())


def refuse_nobody(address: str) -> str | None:
    if address.lower().startswith("nobody@"):
        return "550 5.1.1 no such user here"
    if address.lower().startswith("full@"):
        return "452 4.2.2 mailbox full, try later"
    return None


@pytest.fixture
def refusing_server(tmp_path: Path) -> Iterator[Controller]:
    controller = Controller(
        MailDrop(tmp_path / "mail", refuse=refuse_nobody), hostname="127.0.0.1", port=free_port()
    )
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


async def test_a_550_for_the_recipient_is_permanent_and_a_452_transient(
    refusing_server: Controller, tmp_path: Path
) -> None:
    sender = SmtpSender(SmtpTarget("127.0.0.1", refusing_server.port), timeout=5)
    mail, _ = mail_for("nobody@example.com")
    with pytest.raises(PermanentMailError) as refused:
        await sender.send(mail.sender, mail.recipient, mail.as_bytes())
    assert refused.value.reason == "the server refused the recipient: 550 5.1.1 no such user here"

    mail, _ = mail_for("full@example.com")
    with pytest.raises(TransientMailError, match="452"):
        await sender.send(mail.sender, mail.recipient, mail.as_bytes())
    assert read_mails(tmp_path / "mail", "nobody@example.com", at_least=0, timeout=0) == []


# ----- TLS and AUTH


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate (Debian package openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"relay", b"s3cret:pw")
    return AuthResult(success=ok, handled=False)


def tls_server(tmp_path: Path, certificate: tuple[Path, Path], *, implicit: bool) -> Controller:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    drop = MailDrop(tmp_path / "mail")
    port = free_port()
    if implicit:
        # aiosmtpd does not count a TLS listener as TLS for AUTH: the whole connection is TLS here.
        return Controller(
            drop, "127.0.0.1", port, ssl_context=context, server_hostname="127.0.0.1", auth_require_tls=False,
            authenticator=check_password, auth_required=True,
        )  # fmt: skip
    return Controller(
        drop, "127.0.0.1", port, tls_context=context, require_starttls=True,
        authenticator=check_password, auth_required=True,
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("scheme", ["smtps", "smtp+starttls"])
async def test_tls_with_auth_sends_and_an_untrusted_certificate_is_transient(
    scheme: str, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    controller = tls_server(tmp_path, certificate, implicit=scheme == "smtps")
    controller.start()
    try:
        target = parse_smtp_url(f"{scheme}://relay:s3cret%3Apw@127.0.0.1:{controller.port}")
        assert target.security is (Security.TLS if scheme == "smtps" else Security.STARTTLS)
        assert "s3cret" not in f"{target} {target!r}"
        trusted = ssl.create_default_context(cafile=str(certificate[0]))
        mail, _ = mail_for("ann@example.com")

        await SmtpSender(target, timeout=5, tls_context=trusted).send(
            mail.sender, mail.recipient, mail.as_bytes()
        )
        assert len(read_mails(tmp_path / "mail", "ann@example.com")) == 1

        with pytest.raises(TransientMailError, match="credentials"):
            wrong = SmtpTarget(target.host, target.port, target.security, "relay", "guess")
            await SmtpSender(wrong, timeout=5, tls_context=trusted).send(
                mail.sender, mail.recipient, mail.as_bytes()
            )
        with pytest.raises(TransientMailError):  # the system's CAs do not know this certificate
            await SmtpSender(target, timeout=5).send(mail.sender, mail.recipient, mail.as_bytes())
        assert len(read_mails(tmp_path / "mail", "ann@example.com")) == 1
    finally:
        controller.stop()
