"""users_svc's mail rules without a mesh: what status each refused token gets, and which accounts
a verification or reset mail is composed for."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from mail import MailSettings, TokenPurpose, TokenRefusal, TokenRefused
from meshkit.errors import DomainError
from users_svc.mailing import TokenMailer, token_refused
from users_svc.service import User

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SETTINGS = MailSettings.from_env({})


@pytest.mark.parametrize(
    ("refusal", "code"),
    [
        (TokenRefusal.MALFORMED, grpc.StatusCode.INVALID_ARGUMENT),
        (TokenRefusal.UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT),
        (TokenRefusal.WRONG_PURPOSE, grpc.StatusCode.INVALID_ARGUMENT),
        (TokenRefusal.WRONG_ACCOUNT, grpc.StatusCode.PERMISSION_DENIED),
        (TokenRefusal.USED, grpc.StatusCode.FAILED_PRECONDITION),
        (TokenRefusal.EXPIRED, grpc.StatusCode.FAILED_PRECONDITION),
        (TokenRefusal.ADDRESS_CHANGED, grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_each_refusal_has_its_status_reason_and_field(refusal: TokenRefusal, code: grpc.StatusCode) -> None:
    error = token_refused(TokenRefused(refusal))
    assert error.code == code
    assert error.reason == refusal.value
    assert error.message.startswith("token: ")
    assert error.metadata["field"] == "token"


def user(email: str | None, verified: bool) -> User:
    return User(7, "ann", "Ann", NOW, 0, 0, email=email, email_verified=verified)


def mailer() -> TokenMailer:
    return TokenMailer(SETTINGS, lambda: None, clock=lambda: NOW)


def test_a_reset_mail_goes_to_a_verified_address_only() -> None:
    mail = mailer().password_reset(user("Ann@example.com", verified=True))
    assert mail.record.purpose is TokenPurpose.RESET_PASSWORD
    assert mail.record.address_key == "ann@example.com" and mail.record.account_id == 7
    assert mail.mail.recipient == "Ann@example.com"
    assert mail.record.expire_time == mail.record.create_time.replace(hour=1)
    for unverified in (user("ann@example.com", verified=False), user(None, verified=False)):
        with pytest.raises(Exception) as caught:
            mailer().password_reset(unverified)
        assert not isinstance(caught.value, DomainError), "nothing to send is no error for the asker"


def test_a_new_verification_mail_needs_an_unverified_address() -> None:
    mail = mailer().reverification(user("ann@example.com", verified=False))
    assert mail.record.purpose is TokenPurpose.VERIFY_EMAIL
    assert "verify?token=" in mail.mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for done, reason in ((user("ann@example.com", True), "EMAIL_VERIFIED"), (user(None, False), "NO_EMAIL")):
        with pytest.raises(DomainError) as caught:
            mailer().reverification(done)
        assert caught.value.reason == reason
