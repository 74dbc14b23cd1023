"""Property tests (hypothesis) of what parses client input: on any input a validator either
accepts it or raises InvalidArgument / Unauthenticated naming what is wrong, never anything else;
what it accepts obeys the documented rules; page tokens round-trip and cannot be forged."""

from __future__ import annotations

import os
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshkit.auth import bearer_token, new_token
from meshkit.errors import InvalidArgument, Unauthenticated
from meshkit.ids import MAX_ID, parse_id
from meshkit.pagination import MAX_PAGE_SIZE, PageTokens, page_size
from meshkit.validation import violations
from social.text import is_invisible
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweets_svc.service import TEXT_MAX, normalize_text
from users_svc.service import HANDLE_PATTERN

# CreateTweetRequest.request_id's max_len in the contract.
REQUEST_ID_MAX = 64

# Bounded: these run in `make test` on every change (300 examples each); `make fuzz` runs more.
EXAMPLES = min(int(os.environ.get("FUZZ_EXAMPLES", "300")), 3000)
BOUNDED = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
TOKENS = PageTokens("property-test-secret")

# Text that hypothesis draws from every Unicode category, with the awkward ones well represented.
any_text = st.text(st.characters(codec=None), max_size=400) | st.text(
    st.sampled_from(
        ["a", "\x00", "\n", "\u0301", "\ud800", " ", "😀", "\u202e", "\x7f", "\u200b", "\u2800", "\u3164"]
    ),
    max_size=300,
)


def _utf8(text: str) -> bool:
    """Whether `text` can be sent at all: a protobuf string is UTF-8, which has no lone surrogates."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


wire_text = any_text.filter(_utf8)


@BOUNDED
@given(wire_text)
def test_tweet_text_the_contract_accepts_is_as_documented_and_stored(text: str) -> None:
    if violations(tweets_pb.CreateTweetRequest(text=text)):
        return
    assert 1 <= len(text) <= TEXT_MAX and text.strip()
    assert all(unicodedata.category(c) != "Cc" or c in "\n\t\r" for c in text)
    # What the contract lets through, the service stores (as NFC), unless NFC makes it longer than
    # TEXT_MAX (composition exclusions) or it has no visible character, which it refuses naming
    # the field.
    normalized = unicodedata.normalize("NFC", text)
    try:
        assert normalize_text(text) == normalized
    except InvalidArgument as error:
        assert error.violations[0].field == "text"
        assert len(normalized) > TEXT_MAX or all(is_invisible(c) for c in normalized)


@BOUNDED
@given(wire_text)
def test_request_ids_are_short_and_printable(request_id: str) -> None:
    if violations(tweets_pb.CreateTweetRequest(text="hi", request_id=request_id)):
        return
    assert len(request_id) <= REQUEST_ID_MAX
    assert not any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} for c in request_id)


@BOUNDED
@given(wire_text, wire_text, wire_text)
def test_new_users_the_contract_accepts_are_as_documented(
    handle: str, display_name: str, password: str
) -> None:
    request = users_pb.CreateUserRequest(handle=handle, display_name=display_name, password=password)
    if found := violations(request):
        assert {v.field for v in found} <= {"handle", "display_name", "password"}
        return
    assert HANDLE_PATTERN.fullmatch(handle)
    assert 8 <= len(password) <= 1024
    assert len(display_name) <= 50 and not any(unicodedata.category(c) == "Cc" for c in display_name)


@BOUNDED
@given(any_text | st.integers(min_value=0, max_value=2**70).map(str))
def test_ids_parse_to_a_63_bit_integer_or_name_the_field(value: str) -> None:
    try:
        parsed = parse_id(value, "user_id", required=False)
    except InvalidArgument as error:
        assert error.violations[0].field == "user_id"
        return
    assert parsed is None if value == "" else parsed is not None and 0 <= parsed <= MAX_ID
    assert parsed is None or str(parsed) == value.lstrip("0") or (parsed == 0 and set(value) == {"0"})


@BOUNDED
@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_page_sizes_are_clamped_or_refused(requested: int) -> None:
    try:
        size = page_size(requested)
    except InvalidArgument:
        assert requested < 0
        return
    assert 1 <= size <= MAX_PAGE_SIZE


@BOUNDED
@given(st.text(max_size=40), st.text(max_size=40))
def test_page_tokens_round_trip_within_their_scope_only(cursor: str, scope: str) -> None:
    token = TOKENS.encode(cursor, scope)
    assert TOKENS.decode(token, scope) == cursor
    try:
        TOKENS.decode(token, scope + "x")
    except InvalidArgument as error:
        assert error.violations[0].field == "page_token"
    else:
        raise AssertionError("a token was accepted for another request")


@BOUNDED
@given(any_text | st.binary(max_size=80).map(lambda b: b.hex()), st.text(max_size=20))
def test_anything_but_an_issued_page_token_is_refused(token: str, scope: str) -> None:
    try:
        cursor = TOKENS.decode(token, scope)
    except InvalidArgument as error:
        assert error.violations[0].field == "page_token"
        return
    assert token == "" and cursor is None


@BOUNDED
@given(st.text(max_size=40), st.integers(min_value=0, max_value=200))
def test_a_tampered_page_token_is_refused(cursor: str, position: int) -> None:
    token = TOKENS.encode(cursor, "scope")
    index = position % len(token)
    flipped = "A" if token[index] != "A" else "B"
    tampered = token[:index] + flipped + token[index + 1 :]
    try:
        decoded = TOKENS.decode(tampered, "scope")
    except InvalidArgument:
        return
    # Base64's last character may carry unused bits: a change there can decode to the same bytes.
    assert decoded == cursor


@BOUNDED
@given(st.lists(st.tuples(any_text, any_text), max_size=3))
def test_bearer_tokens_are_refused_unless_well_formed(metadata: list[tuple[str, str]]) -> None:
    try:
        token = bearer_token(metadata)
    except Unauthenticated:
        return
    assert token.startswith("tm_")


def test_a_real_token_is_accepted_in_any_scheme_case() -> None:
    token = new_token()
    assert bearer_token([("authorization", f"bEaReR {token}")]) == token
