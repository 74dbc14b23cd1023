"""Validation rules for accounts, tweets and their media, ids, and error statuses."""

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from media_svc.service import ClaimStatus, claim_status
from meshkit.auth import bearer_token, new_token
from meshkit.errors import InvalidArgument, NotFound, RedisOutage, Unauthenticated, is_outage_reply
from meshkit.ids import id_at, parse_id, time_of
from meshkit.runtime import OutageAwareParser
from meshkit.status import as_domain_error, status_of
from meshkit.validation import check, violations
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweets_svc.service import TEXT_MAX, normalize_text, validate_media
from users_svc.service import validate_display_name


@pytest.mark.parametrize(
    ("handle", "display_name", "password", "field"),
    [
        ("", "x", "password1", "handle"),
        ("a" * 16, "x", "password1", "handle"),
        ("bad-handle", "x", "password1", "handle"),
        ("héllo", "x", "password1", "handle"),
        # A full match: `$` alone would accept a trailing newline ("alice\n" posing as alice).
        ("alice\n", "x", "password1", "handle"),
        ("\nalice", "x", "password1", "handle"),
        ("ok", "x" * 51, "password1", "display_name"),
        ("ok", "bell\x07", "password1", "display_name"),
        ("ok", "right-to-left \u202e override", "password1", "display_name"),
        ("ok", "x", "short", "password"),
    ],
)
def test_the_contract_refuses_bad_new_users_naming_the_field(
    handle: str, display_name: str, password: str, field: str
) -> None:
    request = users_pb.CreateUserRequest(handle=handle, display_name=display_name, password=password)
    with pytest.raises(InvalidArgument) as error:
        check(request)
    assert error.value.violations[0].field == field
    assert error.value.message.startswith(f"{field}:")


def test_a_valid_user_passes_the_contract() -> None:
    check(
        users_pb.CreateUserRequest(handle="Good_Handle_15c", display_name="Ünïcode name", password="eight888")
    )
    check(users_pb.CreateUserRequest(handle="no_name", password="eight888"))  # the name defaults


def test_every_broken_rule_is_named_with_its_place_in_the_request() -> None:
    request = tweets_pb.BatchGetTweetsRequest(tweet_ids=["1", "x", "2", "-3"])
    assert [v.field for v in violations(request)] == ["tweet_ids[1]", "tweet_ids[3]"]
    with pytest.raises(InvalidArgument) as error:
        check(users_pb.ChangePasswordRequest(user_id="1"))
    assert [v.field for v in error.value.violations] == ["old_password", "new_password"]
    assert error.value.message == "old_password: value is required; new_password: value is required"


def test_violations_show_invisible_characters_as_escapes() -> None:
    (violation,) = violations(users_pb.SearchUsersRequest(query="\u2028"))
    assert violation.field == "query"
    assert violation.description.isprintable()
    assert "\\u2028" in violation.description


def test_text_is_counted_in_code_points_and_stored_after_nfc() -> None:
    decomposed = "e\u0301"  # é as two code points; one after NFC
    assert normalize_text(decomposed * (TEXT_MAX // 2)) == "\u00e9" * (TEXT_MAX // 2)
    assert normalize_text("🐦" * TEXT_MAX) == "🐦" * TEXT_MAX
    assert violations(tweets_pb.CreateTweetRequest(text="🐦" * TEXT_MAX)) == ()
    assert [v.field for v in violations(tweets_pb.CreateTweetRequest(text="a" * (TEXT_MAX + 1)))] == ["text"]
    # A composition exclusion grows under NFC: the contract lets it through, the stored form may not.
    expanding = "\u0958" * TEXT_MAX
    assert violations(tweets_pb.CreateTweetRequest(text=expanding)) == ()
    with pytest.raises(InvalidArgument, match="at most 280"):
        normalize_text(expanding)


@pytest.mark.parametrize("text", ["   ", "\n\t", "\u3000\u00a0", "nul\x00byte", "esc\x1b[31m"])
def test_the_contract_refuses_blank_text_and_control_characters(text: str) -> None:
    (violation,) = violations(tweets_pb.CreateTweetRequest(text=text))
    assert violation.field == "text"
    (with_media,) = violations(tweets_pb.CreateTweetRequest(text=text, media_ids=["1"]))
    assert with_media.field == "text"  # what is sent is held to the rules, media or not


INVISIBLE = [
    "\u200b",  # zero-width space (Cf)
    "\u200d",  # zero-width joiner (Cf)
    "\ufeff",  # byte-order mark (Cf)
    "\u2800",  # Braille pattern blank (So, shows nothing)
    "\u3164",  # Hangul filler (Lo, default-ignorable)
    "\u115f\u1160",  # Hangul choseong and jungseong fillers
    "\uffa0",  # halfwidth Hangul filler
    "\u0301\u20dd",  # combining marks with nothing to sit on (Mn, Me)
    "\ufe0f\U000e0020",  # a variation selector and a tag character
    "\u3000\u200b\u2028",  # an ideographic space and a line separator around a zero-width space
    "\u00ad\u034f\u180e\u2060\u2062",  # soft hyphen, grapheme joiner, invisible operators
]


@pytest.mark.parametrize("text", INVISIBLE)
def test_a_tweet_of_only_invisible_characters_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        normalize_text(text * 3)
    assert error.value.violations[0].field == "text"
    assert error.value.reason == "TEXT_INVISIBLE"
    assert normalize_text(f"{text}x{text}")  # with something visible, they are fine (emoji joiners...)


@pytest.mark.parametrize("text", ["\u3164", " \u3164 ", "\u115f\u1160", "\u0301\u20dd"])
def test_a_display_name_of_only_invisible_characters_is_refused(text: str) -> None:
    # The contract's pattern cannot tell these from letters (a Hangul filler is one): the service does.
    assert violations(users_pb.CreateUserRequest(handle="ok", display_name=text, password="password1")) == ()
    with pytest.raises(InvalidArgument) as error:
        validate_display_name(text)
    assert error.value.violations[0].field == "display_name"
    assert error.value.reason == "TEXT_INVISIBLE"
    assert validate_display_name(f"{text}x ") == f"{text}x".strip()


def test_request_id_limits() -> None:
    for accepted in ("", "retry-1", "x" * 64):
        assert violations(tweets_pb.CreateTweetRequest(text="hi", request_id=accepted)) == ()
    for refused in ("x" * 65, "tab\there"):
        assert [v.field for v in violations(tweets_pb.CreateTweetRequest(text="hi", request_id=refused))] == [
            "request_id"
        ]


def test_ids_are_time_ordered_and_parse_strictly() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    ident = id_at(moment)
    assert time_of(ident) == moment
    assert len(str(ident)) == 19
    assert parse_id(str(ident), "user_id") == ident
    assert parse_id("", "user_id", required=False) is None
    for bad in ["", "abc", "-1", "1.5", "99999999999999999999", "\uff11\uff12\uff13"]:
        with pytest.raises(InvalidArgument):
            parse_id(bad, "user_id")


def test_bearer_token_parsing() -> None:
    token = new_token()
    assert bearer_token([("authorization", f"Bearer {token}")]) == token
    for metadata in ([], [("authorization", "Basic abc")], [("authorization", "Bearer short")]):
        with pytest.raises(Unauthenticated):
            bearer_token(metadata)


def test_status_carries_error_info_and_field_violations() -> None:
    status = status_of(InvalidArgument.field("text", "must not be empty"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    kinds = {d.type_url.rsplit("/", 1)[1] for d in status.details}
    assert kinds == {"google.rpc.ErrorInfo", "google.rpc.BadRequest"}
    bad_request = error_details_pb2.BadRequest()
    next(d for d in status.details if d.Is(bad_request.DESCRIPTOR)).Unpack(bad_request)
    assert bad_request.field_violations[0].field == "text"


def test_unexpected_errors_become_internal_without_details() -> None:
    error = as_domain_error(RuntimeError("secret SQL text"), "/x/Y")
    assert error.code == grpc.StatusCode.INTERNAL
    assert "secret" not in error.message
    assert as_domain_error(NotFound("gone"), "/x/Y").code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,  # a stopping peer cancels what is still running
    ],
)
def test_a_peer_that_cannot_answer_now_is_unavailable_not_internal(code: grpc.StatusCode) -> None:
    error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "peer said no")
    assert as_domain_error(error, "/x/Y").code == grpc.StatusCode.UNAVAILABLE
    assert as_domain_error(TimeoutError(), "/x/Y").code == grpc.StatusCode.UNAVAILABLE


def test_a_peer_bug_stays_internal() -> None:
    error = grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "bug")
    assert as_domain_error(error, "/x/Y").code == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("media_ids", "alt_texts", "field"),
    [
        ([1], {2: "not posted"}, "alt_texts"),
        ([1], {1: "x" * 1001}, "alt_texts"),
        ([1], {1: "bell\x07"}, "alt_texts"),
    ],
)
def test_media_of_a_tweet_is_checked(media_ids: list[int], alt_texts: dict[int, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_media(media_ids, alt_texts)
    assert error.value.violations[0].field == field


def test_the_contract_holds_a_tweets_media_to_four_each_once_and_needs_text_or_media() -> None:
    def fields(**request: Any) -> list[str]:
        return [v.field for v in violations(tweets_pb.CreateTweetRequest(**request))]

    assert fields(media_ids=["1", "2", "3", "4", "5"]) == ["media_ids"]
    assert fields(media_ids=["1", "1"]) == ["media_ids"]
    assert fields(media_ids=["1"], alt_texts={"x": "its key is no id"}) == ["alt_texts['x']"]
    assert fields(media_ids=["1"], alt_texts={"1": "x" * 1001}) == ["alt_texts['1']"]
    assert fields() == ["text"]  # neither text nor media: the message's own rule, named for text
    assert fields(media_ids=["1"]) == fields(text="hi") == []


def test_media_alt_texts_are_normalized_and_default_to_empty() -> None:
    assert validate_media([1, 2], {1: " Cafe\u0301\nline two "}) == {1: "Café\nline two", 2: ""}
    assert normalize_text("  ", may_be_empty=True) == ""  # only a tweet with media has no text


@pytest.mark.parametrize(
    ("owner", "state", "tweet_id", "status"),
    [
        (7, "ready", None, ClaimStatus.CLAIMABLE),
        (8, "ready", None, ClaimStatus.NOT_OWNED),
        (7, "ready", 99, ClaimStatus.ATTACHED),
        (7, "uploading", None, ClaimStatus.MISSING),
        (7, "collecting", None, ClaimStatus.MISSING),
        (8, "collecting", 99, ClaimStatus.MISSING),  # gone is gone, whoever asks
    ],
)
def test_only_the_owners_ready_unattached_media_is_claimable(
    owner: int, state: str, tweet_id: int | None, status: ClaimStatus
) -> None:
    assert claim_status(owner, 7, state, tweet_id) is status


@pytest.mark.parametrize(
    ("reply", "outage"),
    [
        ("OOM command not allowed when used memory > 'maxmemory'.", True),
        ("READONLY You can't write against a read only replica.", True),
        ("LOADING Redis is loading the dataset in memory", True),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.", True),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", True),
        ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist", True),
        ("UNBLOCKED force unblock from blocking operation, instance state changed", True),
        # Redis 6 wraps the error of a command a script ran.
        (
            "ERR Error running script (call to f_0123): @user_script:17: @user_script: 17:"
            " -OOM command not allowed when used memory > 'maxmemory'.",
            True,
        ),
        ("BUSYGROUP Consumer Group name already exists", False),
        ("NOGROUP No such key 'events:tweets' or consumer group 'fanout'", False),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
        ("ERR unknown command 'FOO', with args beginning with:", False),
    ],
)
def test_redis_replies_that_mean_an_outage_are_told_apart(reply: str, outage: bool) -> None:
    assert is_outage_reply(reply) is outage
    parsed = OutageAwareParser.parse_error(reply)
    assert isinstance(parsed, RedisOutage) is outage
    if outage:
        assert as_domain_error(parsed, "/x/Y").code == grpc.StatusCode.UNAVAILABLE
