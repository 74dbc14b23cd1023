"""The details a failed call carries, read back as meshkit.status wrote them, and as the CLI shows them."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from meshkit.errors import DomainError, FieldViolation, InvalidArgument
from meshkit.rpc_details import DETAILS_TRAILER, error_details
from meshkit.status import status_of
from tweetmesh_cli.cli import describe_error


class Failed(grpc.RpcError):
    """A failed call as a client sees it, carrying `error` the way abort_with sends it."""

    def __init__(self, error: DomainError) -> None:
        self._error = error

    def code(self) -> grpc.StatusCode:
        return self._error.code

    def details(self) -> str:
        return self._error.message

    # grpc's stubs type the trailers as objects; at run time they are (key, value) pairs.
    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:  # type: ignore[override]
        return ((DETAILS_TRAILER, status_of(self._error).SerializeToString()),)


BAD_TEXT = InvalidArgument(
    "text: too long",
    reason="TOO_LONG",
    violations=(FieldViolation("text", "at most 280 characters"),),
    retry_after_seconds=2.5,
)


def test_each_kind_of_detail_is_read_back() -> None:
    failed = Failed(BAD_TEXT)
    [info] = error_details(failed, error_details_pb2.ErrorInfo)
    assert info.reason == "TOO_LONG"
    [bad] = error_details(failed, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [("text", "at most 280 characters")]
    [retry] = error_details(failed, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToTimedelta().total_seconds() == 2.5
    assert error_details(failed, error_details_pb2.QuotaFailure) == []


def test_an_error_without_details_has_none() -> None:
    class Bare(grpc.RpcError):
        # What grpc answers for a call that ended without trailers, whatever its stubs say.
        def trailing_metadata(self) -> None:  # type: ignore[override]
            return None

    assert error_details(Bare(), error_details_pb2.ErrorInfo) == []


def test_the_cli_names_each_bad_field() -> None:
    assert (
        describe_error(Failed(BAD_TEXT)) == "invalid argument: text: too long\n  text: at most 280 characters"
    )
