"""A local SMTP server (aiosmtpd) that keeps each mail it receives as a file, for `make run` and
the tests; and the reader of those files.

Every message accepted is written once per recipient as `<folder>/<time>-<n>.eml`: the message as
received, preceded by the two headers a mail server adds on delivery, `Return-Path:` (the envelope
sender) and `Delivered-To:` (the recipient). A file appears whole (written aside, then renamed).
Nothing is relayed anywhere. `python -m devstack.smtp --port N --folder DIR [--host ADDRESS]` runs
it (on 127.0.0.1 unless --host says otherwise: 0.0.0.0 in a container);
`python -m devstack.smtp --show ADDRESS [--folder DIR]` prints the newest mail delivered to ADDRESS
as plain text (the folder defaults to `make run`'s, .data/mail).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from devstack.process import ManagedProcess, Server

HOST = "127.0.0.1"
_ROOT = Path(__file__).resolve().parent.parent


class MailDrop:
    """An aiosmtpd handler that files each mail in `folder`; `refuse(recipient)` may return a
    reply (e.g. "550 5.1.1 no such user") to refuse a recipient, as a real server would."""

    def __init__(self, folder: Path, refuse: Callable[[str], str | None] | None = None) -> None:
        self.folder = folder
        self._refuse = refuse
        self._sequence = itertools.count()
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self._refuse(address) if self._refuse is not None else None
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        for recipient in envelope.rcpt_tos:
            head = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {recipient}\r\n".encode()
            name = f"{stamp}-{os.getpid()}-{next(self._sequence):06d}.eml"
            partial = self.folder / f".{name}.partial"
            partial.write_bytes(head + content)
            partial.replace(self.folder / name)
        return "250 OK: kept"


def read_mails(folder: Path, address: str, *, at_least: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
    """The mails delivered to `address` (ignoring case) in `folder`, oldest first, once there are
    at least `at_least` of them; raises TimeoutError saying what is there after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = [mail for mail in _mails(folder) if str(mail["Delivered-To"]).lower() == address.lower()]
        if len(found) >= at_least:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(found)} mail(s) for {address} in {folder} after {timeout:g}s, expected {at_least}"
            )
        time.sleep(0.05)


def _mails(folder: Path) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    paths = sorted(folder.glob("*.eml")) if folder.is_dir() else []
    return [parser.parsebytes(path.read_bytes()) for path in paths]


def _greets(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            return sock.recv(3) == b"220"
    except OSError:
        return False


def start_smtp(folder: Path, port: int, *, log_path: Path | None = None, timeout: float = 30.0) -> Server:
    """Starts the mail drop on 127.0.0.1:`port` keeping mails in `folder`; returns it with its
    SMTP_URL."""
    argv = [sys.executable, "-m", "devstack.smtp", "--port", str(port), "--folder", os.fspath(folder)]
    process = ManagedProcess("smtp", argv, log_path=log_path)
    try:
        process.wait_until(lambda: _greets(port), timeout, "answering SMTP")
    except BaseException:
        process.stop()
        raise
    return Server(process, f"smtp://{HOST}:{port}")


async def serve(folder: Path, port: int, host: str = HOST) -> None:
    """Runs the mail drop until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    drop = MailDrop(folder)
    server = await loop.create_server(lambda: SMTP(drop, hostname="tweetmesh.local"), host, port)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


def show_newest(folder: Path, address: str) -> str:
    """The newest mail delivered to `address` in `folder`: its headers and plain-text body."""
    found = read_mails(folder, address, at_least=0, timeout=0)
    if not found:
        raise SystemExit(f"no mail for {address} in {folder}")
    mail = found[-1]
    body = mail.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    return "".join(f"{name}: {mail[name]}\n" for name in ("Date", "From", "To", "Subject")) + f"\n{text}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.smtp", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="run the server on this port")
    parser.add_argument("--folder", type=Path, help="where mails are kept (default: make run's, .data/mail)")
    parser.add_argument("--host", default=HOST, help=f"the address to listen on (default {HOST})")
    parser.add_argument("--show", metavar="ADDRESS", help="print the newest mail to ADDRESS and exit")
    options = parser.parse_args()
    folder = options.folder or Path(os.environ.get("TWEETMESH_DATA_DIR") or _ROOT / ".data") / "mail"
    if options.show:
        sys.stdout.write(show_newest(folder, options.show))
    elif options.port is None:
        parser.error("--port is required to run the server (or --show ADDRESS to read a mail)")
    else:
        asyncio.run(serve(folder, options.port, options.host))


if __name__ == "__main__":
    main()
