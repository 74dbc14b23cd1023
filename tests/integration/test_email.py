"""Email addresses of accounts through the mesh and its local SMTP server: sign up with an address,
verify it with the mailed token, sign in with it, reset a forgotten password (every session
revoked), change the address (verified again); every bad token refused with its own status and
nothing changed; the address shown to its owner only; a mail server outage delays mail, never a
request."""

from __future__ import annotations

import functools
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable

import grpc
import psycopg
from google.rpc import error_details_pb2

from devstack.mesh import Mesh
from devstack.smtp import read_mails
from mail import token_hash
from meshkit.rpc_details import error_details
from tests.helpers import PASSWORD, Account, Stubs, http_call, rpc_error, unique_handle
from tweetmesh.users.v1 import users_service_pb2 as pb

NEW_PASSWORD = "a brand new secret"
_LINK = re.compile(r"/(verify|reset-password)\?token=([A-Za-z0-9_-]{43})")


def new_address(prefix: str = "ann") -> str:
    return f"{prefix}.{secrets.token_hex(4)}@Example.com"


def mailed_tokens(mesh: Mesh, address: str, kind: str, at_least: int = 1) -> list[str]:
    """The tokens of the `kind` links ("verify" or "reset-password") mailed to `address`, oldest
    first, once there are `at_least` mails (0: what is there now)."""
    assert mesh.mail_dir is not None
    found = []
    for mail in read_mails(mesh.mail_dir, address, at_least=at_least, timeout=30 if at_least else 0):
        body = mail.get_body(("plain",))
        assert body is not None
        found += [token for link, token in _LINK.findall(body.get_content()) if link == kind]
    assert len(found) >= at_least, found
    return found


def mail_count(mesh: Mesh, address: str) -> int:
    assert mesh.mail_dir is not None
    return len(read_mails(mesh.mail_dir, address, at_least=0, timeout=0))


def reason(error: grpc.RpcError) -> str:
    infos = error_details(error, error_details_pb2.ErrorInfo)
    return infos[0].reason if infos else ""


def sign_up(stubs: Stubs, email: str, prefix: str = "mail") -> Account:
    handle = unique_handle(prefix)
    stubs.users.CreateUser(pb.CreateUserRequest(handle=handle, password=PASSWORD, email=email), timeout=10)
    login = stubs.users.Login(pb.LoginRequest(handle=handle, password=PASSWORD), timeout=10)
    return Account(login.user, login.token)


def login_email(stubs: Stubs, email: str, password: str = PASSWORD) -> pb.LoginResponse:
    return stubs.users.Login(pb.LoginRequest(email=email, password=password), timeout=10)


def verify(stubs: Stubs, token: str, account: Account | None = None) -> None:
    stubs.users.VerifyEmail(
        pb.VerifyEmailRequest(token=token), metadata=account.auth if account else None, timeout=10
    )


def reset(stubs: Stubs, token: str, password: str = NEW_PASSWORD) -> None:
    stubs.users.ResetPassword(pb.ResetPasswordRequest(token=token, new_password=password), timeout=10)


def ask_reset(stubs: Stubs, email: str) -> None:
    stubs.users.RequestPasswordReset(pb.RequestPasswordResetRequest(email=email), timeout=10)


def change_email(
    stubs: Stubs, account: Account, email: str, password: str = PASSWORD, caller: Account | None = None
) -> pb.User:
    request = pb.ChangeEmailRequest(user_id=account.user_id, email=email, password=password)
    return stubs.users.ChangeEmail(request, metadata=(caller or account).auth, timeout=10).user


def own(stubs: Stubs, account: Account) -> pb.User:
    return stubs.users.GetUser(pb.GetUserRequest(user_id=account.user_id), metadata=account.auth).user


def refused(call: Callable[[], object], code: str, why: str) -> grpc.RpcError:
    """The error `call` fails with, after checking its status code (by name) and ErrorInfo reason."""
    error = rpc_error(call)
    assert error.code().name == code, error.details()
    assert reason(error) == why, error.details()
    assert error.details(), "a refusal says why in words"
    return error


def test_sign_up_verify_and_sign_in_with_the_email(stubs: Stubs, mesh: Mesh) -> None:
    address = new_address()
    account = sign_up(stubs, address)
    # Stored as given, but the domain lowercased; unverified, and only its owner sees it.
    assert own(stubs, account).email == address.replace("Example.com", "example.com")
    assert not own(stubs, account).email_verified
    shown = stubs.users.GetUser(pb.GetUserRequest(user_id=account.user_id), timeout=10).user
    assert shown.email == "" and not shown.email_verified
    other = stubs.sign_up("peer")
    assert (
        stubs.users.GetUser(pb.GetUserRequest(user_id=account.user_id), metadata=other.auth).user.email == ""
    )
    found = stubs.users.SearchUsers(pb.SearchUsersRequest(query=account.user.handle), timeout=10).users
    assert [u.email for u in found] == [""]

    # An unverified address signs nobody in.
    refused(lambda: login_email(stubs, address), "UNAUTHENTICATED", "BAD_CREDENTIALS")

    (token,) = mailed_tokens(mesh, address, "verify")
    verify(stubs, token)
    assert own(stubs, account).email_verified
    # Any spelling of the address signs in (it is unique ignoring case); a wrong password does not.
    assert login_email(stubs, address.upper()).user.user_id == account.user_id
    assert login_email(stubs, address.upper()).user.email_verified
    refused(
        lambda: login_email(stubs, address, "not the password"),
        "UNAUTHENTICATED",
        "BAD_CREDENTIALS",
    )
    # A token works once.
    refused(lambda: verify(stubs, token), "FAILED_PRECONDITION", "TOKEN_USED")


def test_addresses_are_unique_ignoring_case_and_validated(stubs: Stubs) -> None:
    address = new_address("bob")
    sign_up(stubs, address)
    refused(lambda: sign_up(stubs, address.lower()), "ALREADY_EXISTS", "EMAIL_TAKEN")
    # The contract refuses what is no address at all (INVALID_FIELD); the address rules, the rest.
    for bad, why in (
        ("no-at-sign", "INVALID_FIELD"),
        ("two@@example.com", "INVALID_FIELD"),
        ("ann@localhost", "INVALID_EMAIL"),
        ("ann@example", "INVALID_EMAIL"),
        ("x" * 65 + "@example.com", "INVALID_EMAIL"),
    ):
        error = refused(functools.partial(sign_up, stubs, bad), "INVALID_ARGUMENT", why)
        assert (error.details() or "").startswith("email: ")


def test_bad_tokens_are_refused_each_with_its_reason_and_change_nothing(stubs: Stubs, mesh: Mesh) -> None:
    address = new_address("cat")
    account = sign_up(stubs, address)
    (token,) = mailed_tokens(mesh, address, "verify")
    other = stubs.sign_up("other")
    cases: dict[str, tuple[str, str, Account | None]] = {
        # Not the shape of a token: the contract refuses it.
        "INVALID_FIELD": ("short", "INVALID_ARGUMENT", None),
        "TOKEN_UNKNOWN": (secrets.token_urlsafe(32), "INVALID_ARGUMENT", None),
        "TOKEN_WRONG_ACCOUNT": (token, "PERMISSION_DENIED", other),
    }
    for why, (candidate, code, caller) in cases.items():
        refused(functools.partial(verify, stubs, candidate, caller), code, why)
        assert not own(stubs, account).email_verified, why
    # A verification token is no reset token.
    refused(lambda: reset(stubs, token), "INVALID_ARGUMENT", "TOKEN_WRONG_PURPOSE")
    # Expired (the clock moved on): refused, and still nothing verified.
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE users.account_tokens SET create_time = now() - interval '4 days',"
            " expire_time = now() - interval '1 second' WHERE token_hash = %s",
            (token_hash(token),),
        )
    refused(lambda: verify(stubs, token, account), "FAILED_PRECONDITION", "TOKEN_EXPIRED")
    assert not own(stubs, account).email_verified
    # A new one can be asked for, by the owner.
    stubs.users.SendVerificationEmail(
        pb.SendVerificationEmailRequest(user_id=account.user_id), metadata=account.auth, timeout=10
    )
    fresh = mailed_tokens(mesh, address, "verify", at_least=2)[-1]
    verify(stubs, fresh, account)
    assert own(stubs, account).email_verified
    refused(
        lambda: stubs.users.SendVerificationEmail(
            pb.SendVerificationEmailRequest(user_id=account.user_id), metadata=account.auth, timeout=10
        ),
        "FAILED_PRECONDITION",
        "EMAIL_VERIFIED",
    )


def verified_account(stubs: Stubs, mesh: Mesh, prefix: str) -> tuple[Account, str]:
    address = new_address(prefix)
    account = sign_up(stubs, address)
    verify(stubs, mailed_tokens(mesh, address, "verify")[0])
    return account, address


def test_a_password_reset_revokes_every_session(stubs: Stubs, mesh: Mesh) -> None:
    account, address = verified_account(stubs, mesh, "dan")
    second = Account(account.user, stubs.users.Login(pb.LoginRequest(email=address, password=PASSWORD)).token)
    ask_reset(stubs, address.upper())
    (first_token,) = mailed_tokens(mesh, address, "reset-password")
    ask_reset(stubs, address)
    later_token = mailed_tokens(mesh, address, "reset-password", at_least=2)[-1]

    # A password that is too short is refused before the token is spent.
    short = refused(lambda: reset(stubs, later_token, "short"), "INVALID_ARGUMENT", "INVALID_FIELD")
    assert "new_password" in (short.details() or "")
    reset(stubs, later_token)
    for session in (account, second):
        refused(functools.partial(stubs.home, session), "UNAUTHENTICATED", "TOKEN_INVALID")
    assert login_email(stubs, address, NEW_PASSWORD).user.user_id == account.user_id
    assert stubs.users.Login(pb.LoginRequest(handle=account.user.handle, password=NEW_PASSWORD)).token
    refused(lambda: login_email(stubs, address), "UNAUTHENTICATED", "BAD_CREDENTIALS")
    # Each reset token works once, and using one uses up the others mailed before it.
    for used in (later_token, first_token):
        refused(functools.partial(reset, stubs, used, "yet another one"), "FAILED_PRECONDITION", "TOKEN_USED")
    assert login_email(stubs, address, NEW_PASSWORD).token


def test_an_expired_reset_token_changes_nothing(stubs: Stubs, mesh: Mesh) -> None:
    account, address = verified_account(stubs, mesh, "eve")
    ask_reset(stubs, address)
    (token,) = mailed_tokens(mesh, address, "reset-password")
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE users.account_tokens SET create_time = now() - interval '2 hours',"
            " expire_time = now() - interval '1 hour' WHERE token_hash = %s",
            (token_hash(token),),
        )
    refused(lambda: reset(stubs, token), "FAILED_PRECONDITION", "TOKEN_EXPIRED")
    stubs.home(account)  # the session lives
    assert login_email(stubs, address).token  # and the password is the old one


def test_a_reset_answers_the_same_whoever_asks(stubs: Stubs, mesh: Mesh) -> None:
    account, address = verified_account(stubs, mesh, "fay")
    unknown = new_address("nobody")
    unverified = new_address("later")
    sign_up(stubs, unverified)
    for email in (address, unknown, unverified):
        ask_reset(stubs, email)
    mailed_tokens(mesh, address, "reset-password")
    assert mail_count(mesh, unknown) == 0
    # The unverified address got its verification mail, and no reset mail.
    assert mailed_tokens(mesh, unverified, "verify")
    assert mailed_tokens(mesh, unverified, "reset-password", at_least=0) == []
    refused(lambda: ask_reset(stubs, "not an address"), "INVALID_ARGUMENT", "INVALID_FIELD")
    refused(lambda: ask_reset(stubs, "ann@localhost"), "INVALID_ARGUMENT", "INVALID_EMAIL")
    stubs.home(account)  # asking for resets touched no session


def test_changing_the_email_verifies_the_new_one_and_needs_the_password(stubs: Stubs, mesh: Mesh) -> None:
    account, old = verified_account(stubs, mesh, "gus")
    new = new_address("gus2")
    refused(lambda: change_email(stubs, account, new, "wrong password"), "INVALID_ARGUMENT", "BAD_PASSWORD")
    intruder = stubs.sign_up("intruder")
    refused(
        lambda: change_email(stubs, account, new, PASSWORD, caller=intruder), "PERMISSION_DENIED", "NOT_OWNER"
    )
    assert own(stubs, account).email == old.replace("Example.com", "example.com")

    # A reset mailed to the old address must not outlive the change.
    ask_reset(stubs, old)
    (stale_reset,) = mailed_tokens(mesh, old, "reset-password")
    changed = change_email(stubs, account, new)
    assert changed.email.lower() == new.lower() and not changed.email_verified
    refused(lambda: login_email(stubs, old), "UNAUTHENTICATED", "BAD_CREDENTIALS")
    refused(lambda: login_email(stubs, new), "UNAUTHENTICATED", "BAD_CREDENTIALS")
    refused(
        lambda: reset(stubs, stale_reset),
        "FAILED_PRECONDITION",
        "TOKEN_ADDRESS_CHANGED",
    )

    (token,) = mailed_tokens(mesh, new, "verify")
    verify(stubs, token, account)
    assert login_email(stubs, new).user.user_id == account.user_id
    # The old address is free again; removing the address leaves sign-in by handle only.
    sign_up(stubs, old)
    removed = change_email(stubs, account, "")
    assert removed.email == "" and not removed.email_verified
    refused(lambda: login_email(stubs, new), "UNAUTHENTICATED", "BAD_CREDENTIALS")


def test_through_envoy_as_http_json(stubs: Stubs, mesh: Mesh) -> None:
    port = mesh.ports.envoy
    address = new_address("hal")
    handle = unique_handle("hal")
    created = http_call(port, "POST", "/v1/users", {"handle": handle, "password": PASSWORD, "email": address})
    assert created.status == 200, created.body
    assert created.json()["user"]["email"].lower() == address.lower()
    (token,) = mailed_tokens(mesh, address, "verify")
    bad = http_call(port, "POST", "/v1/users:verifyEmail", {"token": "x"})
    assert bad.status == 400 and bad.json()["details"][0]["reason"] == "INVALID_FIELD"
    assert http_call(port, "POST", "/v1/users:verifyEmail", {"token": token}).status == 200
    again = http_call(port, "POST", "/v1/users:verifyEmail", {"token": token})
    assert again.status == 400 and again.json()["details"][0]["reason"] == "TOKEN_USED"
    session = http_call(port, "POST", "/v1/sessions", {"email": address, "password": PASSWORD}).json()
    mine = http_call(port, "GET", f"/v1/users/{session['user']['user_id']}", token=session["token"]).json()
    assert mine["user"]["email_verified"] is True
    theirs = http_call(port, "GET", f"/v1/users/{session['user']['user_id']}").json()
    assert theirs["user"].get("email", "") == "" and not theirs["user"].get("email_verified")
    assert http_call(port, "POST", "/v1/users:requestPasswordReset", {"email": address}).status == 200
    assert http_call(port, "POST", "/v1/users:requestPasswordReset", {"email": new_address()}).json() == {}
    (reset_token,) = mailed_tokens(mesh, address, "reset-password")
    done = http_call(
        port, "POST", "/v1/users:resetPassword", {"token": reset_token, "new_password": NEW_PASSWORD}
    )
    assert done.status == 200
    assert http_call(port, "GET", "/v1/timelines/home", token=session["token"]).status == 401


def test_a_mail_server_outage_delays_mail_never_a_request(stubs: Stubs, mesh: Mesh) -> None:
    address = new_address("ivy")
    mesh.stop_dependency("smtp")
    try:
        account = sign_up(stubs, address)  # answers at once: the mail waits in the outbox
        ask_reset(stubs, address)  # unverified: nothing to send anyway, and no error
        time.sleep(1.5)  # the relay tried, failed, and scheduled a retry (MAIL_RETRY_SECONDS=1)
        assert mail_count(mesh, address) == 0
    finally:
        mesh.start_dependency("smtp")
    (token,) = mailed_tokens(mesh, address, "verify")
    verify(stubs, token)
    assert own(stubs, account).email_verified


def test_the_mail_drop_shows_the_newest_mail_to_an_address(stubs: Stubs, mesh: Mesh) -> None:
    address = new_address("joy")
    sign_up(stubs, address)
    (token,) = mailed_tokens(mesh, address, "verify")
    shown = subprocess.run(
        [sys.executable, "-m", "devstack.smtp", "--show", address, "--folder", str(mesh.mail_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "Subject: Confirm your email address for tweetmesh" in shown
    assert f"/verify?token={token}" in shown
