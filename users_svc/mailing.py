"""users_svc's mail: the tokens and mails an account is sent (mail/), and what they allow:
verifying an email address, changing it (verified again), and resetting a forgotten password.

Every mail is queued in the transaction that makes its token (mail.postgres), so a committed
request's mail is never lost; the relay sends it after the commit (`Mailer.queued` wakes it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from mail import (
    EmailAddress,
    MailSettings,
    TokenPurpose,
    TokenRecord,
    TokenRefusal,
    TokenRefused,
    check_token,
    issue_token,
    password_reset_mail,
    token_hash,
    verification_mail,
)
from meshkit.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from users_svc.service import (
    ComposeMail,
    EmailTaken,
    NewAddress,
    TokenMail,
    User,
    Users,
    email_address,
    email_taken,
    require_owner,
)

# A password-reset request answers no sooner than this, whether or not it mailed anyone, so that
# the time it takes does not tell whether an account has the address.
RESET_ANSWER_SECONDS = 0.3

# What a token's use checks once its row and the account are locked: the record found (None: no
# such token) and the account's address key now (None: it has none); the record as used, or
# TokenRefused.
CheckToken = Callable[[TokenRecord | None, str | None], TokenRecord]


class MailStore(Protocol):
    """What mail needs of the store (users_svc.storage.PostgresUserStore)."""

    async def change_email(self, user_id: int, address: NewAddress | None) -> None:
        """Replaces the address (unverified) and queues its mail; None removes it. EmailTaken."""
        ...

    async def mail_token(self, user_id: int, compose: ComposeMail) -> None:
        """Reads the account (locked) and queues the token and mail `compose` makes of it; a
        DomainError from `compose` rolls everything back."""
        ...

    async def account_with_verified_email(self, email_key: str) -> int | None: ...
    async def verify_email(self, digest: bytes, check: CheckToken) -> int:
        """Uses a verification token and marks the address it was mailed to verified; the user id."""
        ...

    async def reset_password(self, digest: bytes, check: CheckToken, password_hash: str) -> list[bytes]:
        """Uses a reset token: stores the new hash, uses up the account's other reset tokens and
        deletes every session, together; returns the sessions' digests."""
        ...


class MailBudget(Protocol):
    """How many mails an account may be sent (a rate, counted in Redis)."""

    async def allow(self, user_id: int) -> bool: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _NotSent(Exception):
    """Nothing to mail after all (the address changed meanwhile): the request still succeeds."""


def token_refused(error: TokenRefused) -> DomainError:
    """The status of a refused token, with its reason: a token that was never valid here is a bad
    argument; one that was (used, expired, mailed to an address the account no longer has) a failed
    precondition; another account's, a denial."""
    reason = error.reason
    if reason is TokenRefusal.WRONG_ACCOUNT:
        return PermissionDenied(f"token: {error}", reason=reason.value, metadata={"field": "token"})
    if reason in (TokenRefusal.MALFORMED, TokenRefusal.UNKNOWN, TokenRefusal.WRONG_PURPOSE):
        return InvalidArgument.field("token", str(error), reason=reason.value)
    return FailedPrecondition(f"token: {error}", reason=reason.value, metadata={"field": "token"})


class TokenMailer:
    """Composes the token mails (users_svc.service.Mailer) and wakes the relay once one is queued."""

    def __init__(
        self, settings: MailSettings, wake: Callable[[], None], clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self._settings = settings
        self._wake = wake
        self._clock = clock

    def _token_mail(self, purpose: TokenPurpose, user: User, to: EmailAddress) -> TokenMail:
        token = issue_token(purpose, user.user_id, to.key, self._clock())
        compose = verification_mail if purpose is TokenPurpose.VERIFY_EMAIL else password_reset_mail
        return TokenMail(token.record, compose(self._settings, to, user.handle, token.secret))

    def verification(self, email: EmailAddress) -> ComposeMail:
        return lambda user: self._token_mail(TokenPurpose.VERIFY_EMAIL, user, email)

    def reverification(self, user: User) -> TokenMail:
        """A new verification mail to the account's unverified address."""
        if user.email is None:
            raise FailedPrecondition("the account has no email address", reason="NO_EMAIL")
        if user.email_verified:
            raise FailedPrecondition("the email address is verified already", reason="EMAIL_VERIFIED")
        return self._token_mail(TokenPurpose.VERIFY_EMAIL, user, email_address(user.email))

    def password_reset(self, user: User) -> TokenMail:
        """The reset mail, to the account's address if it is (still) verified."""
        if user.email is None or not user.email_verified:
            raise _NotSent
        return self._token_mail(TokenPurpose.RESET_PASSWORD, user, email_address(user.email))

    def queued(self) -> None:
        self._wake()

    def now(self) -> datetime:
        return self._clock()


class AccountEmail:
    """The email address of an account and what mailed tokens allow."""

    def __init__(
        self,
        users: Users,
        store: MailStore,
        mailer: TokenMailer,
        budget: MailBudget,
        *,
        reset_answer_seconds: float = RESET_ANSWER_SECONDS,
    ) -> None:
        self._users = users
        self._store = store
        self._mailer = mailer
        self._budget = budget
        self._reset_answer_seconds = reset_answer_seconds

    def _check(self, purpose: TokenPurpose, actor: int | None = None) -> CheckToken:
        return lambda record, address_key: check_token(
            record, purpose=purpose, now=self._mailer.now(), account_id=actor, address_key=address_key or ""
        )

    async def verify(self, actor: int | None, token: str) -> None:
        """Marks the address the token was mailed to verified; signed in, only the account's own."""
        try:
            await self._store.verify_email(token_hash(token), self._check(TokenPurpose.VERIFY_EMAIL, actor))
        except TokenRefused as error:
            raise token_refused(error) from None

    async def change(self, actor: int, user_id: int, email: str, password: str) -> User:
        """Sets, replaces or (empty) removes the address after checking the password; a new address
        is unverified and sent a verification mail. The same address again changes nothing."""
        require_owner(actor, user_id, "change its own email address")
        address = email_address(email) if email.strip() else None
        await self._users.check_password(user_id, password, "password")
        current = await self._users.get_user(user_id)
        if address is not None and current.email is not None and address.key == current.email.lower():
            return current
        try:
            await self._store.change_email(
                user_id, None if address is None else NewAddress(address, self._mailer.verification(address))
            )
        except EmailTaken:
            raise email_taken() from None
        if address is not None:
            self._mailer.queued()
        return await self._users.get_user(user_id)

    async def resend_verification(self, actor: int, user_id: int) -> None:
        require_owner(actor, user_id, "ask for its own verification mail")
        if not await self._budget.allow(user_id):
            raise ResourceExhausted("too many mails for this account; try again later", reason="MAIL_LIMITED")
        await self._store.mail_token(user_id, self._mailer.reverification)
        self._mailer.queued()

    async def request_reset(self, email: str) -> None:
        """Mails a reset token to the account whose verified address this is, if there is one and
        its mail budget allows; otherwise nothing. The answer and its timing are the same."""
        started = time.monotonic()
        address = email_address(email)
        try:
            user_id = await self._store.account_with_verified_email(address.key)
            if user_id is not None and await self._budget.allow(user_id):
                await self._store.mail_token(user_id, self._mailer.password_reset)
                self._mailer.queued()
        except _NotSent:
            pass
        await asyncio.sleep(max(self._reset_answer_seconds - (time.monotonic() - started), 0))

    async def reset(self, token: str, new_password: str) -> None:
        """Sets the new password (its rules are the contract's) and revokes every session of the
        account."""
        try:
            digest = token_hash(token)
        except TokenRefused as error:
            raise token_refused(error) from None
        password_hash = await self._users.hash_password(new_password)
        try:
            await self._store.reset_password(digest, self._check(TokenPurpose.RESET_PASSWORD), password_hash)
        except TokenRefused as error:
            raise token_refused(error) from None
