"""Page sizes and page tokens: the rules every list follows."""

import base64

import pytest

from meshkit.errors import InvalidArgument
from meshkit.pagination import PageTokens, page_size


def test_page_size_defaults_coerces_and_refuses_negative() -> None:
    assert page_size(0) == 20
    assert page_size(7) == 7
    assert page_size(10_000) == 100
    with pytest.raises(InvalidArgument) as error:
        page_size(-1)
    assert error.value.violations[0].field == "page_size"


def test_token_round_trips_within_its_scope() -> None:
    tokens = PageTokens("secret")
    token = tokens.encode("12345", "followers:1")
    assert tokens.decode(token, "followers:1") == "12345"
    assert tokens.decode("", "followers:1") is None


def test_token_reused_with_other_arguments_is_refused() -> None:
    tokens = PageTokens("secret")
    token = tokens.encode("12345", "followers:1")
    with pytest.raises(InvalidArgument, match="other arguments"):
        tokens.decode(token, "followers:2")


@pytest.mark.parametrize("token", ["garbage", "!!!", "QUJD", "a" * 500])
def test_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        PageTokens("secret").decode(token, "scope")
    assert error.value.violations[0].field == "page_token"


def test_token_signed_with_another_secret_is_refused() -> None:
    token = PageTokens("one").encode("1", "s")
    with pytest.raises(InvalidArgument):
        PageTokens("two").decode(token, "s")


def test_forged_cursor_is_refused() -> None:
    tokens = PageTokens("secret")
    raw = base64.urlsafe_b64decode(tokens.encode("100", "s") + "==")
    forged = base64.urlsafe_b64encode(raw.replace(b"100", b"999")).decode().rstrip("=")
    with pytest.raises(InvalidArgument):
        tokens.decode(forged, "s")


def test_a_rotated_secret_still_accepts_what_the_previous_one_signed() -> None:
    before = PageTokens("old").encode("7", "s")
    rotated = PageTokens("new", "old")
    assert rotated.decode(before, "s") == "7"
    after = rotated.encode("8", "s")
    assert PageTokens("new").decode(after, "s") == "8"  # signed with the first
    with pytest.raises(InvalidArgument):
        PageTokens("old").decode(after, "s")
    with pytest.raises(InvalidArgument):
        PageTokens("new").decode(before, "s")  # once the old secret is dropped, its tokens end
