"""Reading back the google.rpc details a failed call carries (meshkit.status writes them): for the
clients of the mesh, the CLI, the benchmark and the tests."""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2

# The trailer holding the serialized google.rpc.Status of a failed call.
DETAILS_TRAILER = "grpc-status-details-bin"

D = TypeVar("D", bound=Message)


def error_details(error: grpc.RpcError, kind: type[D]) -> list[D]:
    """The details of type `kind` (ErrorInfo, BadRequest, RetryInfo...) that `error` carries, in order."""
    trailers: Any = error.trailing_metadata() or ()  # on grpc.Call and AioRpcError alike
    found: list[D] = []
    for key, value in trailers:
        if key == DETAILS_TRAILER:
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(kind.DESCRIPTOR):
                    unpacked = kind()
                    detail.Unpack(unpacked)
                    found.append(unpacked)
    return found


__all__ = ["DETAILS_TRAILER", "error_details"]
