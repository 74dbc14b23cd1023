"""Media errors: uploads refused and why (INVALID_ARGUMENT), missing blobs, storage down (UNAVAILABLE)."""

from __future__ import annotations

import enum

from meshkit.errors import FieldViolation, InvalidArgument, NotFound, Unavailable


class Refusal(enum.StrEnum):
    """Why an upload was refused: the ErrorInfo reason a client can act on."""

    EMPTY = "MEDIA_EMPTY"
    TOO_LARGE = "MEDIA_TOO_LARGE"
    # The claimed content type is not one we accept, or the content is no type we accept.
    UNSUPPORTED_TYPE = "MEDIA_UNSUPPORTED_TYPE"
    # The claimed content type is accepted but the content is of another type.
    TYPE_MISMATCH = "MEDIA_TYPE_MISMATCH"
    TRUNCATED = "MEDIA_TRUNCATED"
    # The content starts like an accepted type but its structure is broken or lies.
    MALFORMED = "MEDIA_MALFORMED"
    TOO_MANY_PIXELS = "MEDIA_TOO_MANY_PIXELS"
    # Decoding it would take far more memory or time than its size suggests.
    DECOMPRESSION_BOMB = "MEDIA_DECOMPRESSION_BOMB"


class MediaRefused(InvalidArgument):
    """An upload that is not accepted media. The service answers INVALID_ARGUMENT (HTTP 400) with
    ErrorInfo(reason) and one BadRequest field violation naming `content_type` or `data`."""

    @classmethod
    def of(cls, refusal: Refusal, description: str, field: str = "data") -> MediaRefused:
        return cls(
            message=f"{field}: {description}",
            reason=refusal.value,
            metadata={"field": field},
            violations=(FieldViolation(field, description),),
        )

    @classmethod
    def truncated(cls, what: str) -> MediaRefused:
        return cls.of(Refusal.TRUNCATED, f"is truncated: {what}")

    @classmethod
    def malformed(cls, kind: str, what: str) -> MediaRefused:
        return cls.of(Refusal.MALFORMED, f"is not a valid {kind}: {what}")

    @property
    def refusal(self) -> Refusal:
        return Refusal(self.reason)


class BlobNotFound(NotFound):
    """No blob is stored under the key."""

    @classmethod
    def of(cls, key: str) -> BlobNotFound:
        return cls(message=f"blob {key!r} not found", reason="BLOB_NOT_FOUND", metadata={"key": key})


class BlobStoreUnavailable(Unavailable):
    """The blob store failed (disk, network, the object store's answer): the caller may retry later.
    The message never carries the store's address or credentials; the cause stays on __cause__."""

    @classmethod
    def of(cls, operation: str) -> BlobStoreUnavailable:
        return cls(
            message=f"media storage unavailable ({operation}); retry later",
            reason="MEDIA_STORAGE_UNAVAILABLE",
        )
