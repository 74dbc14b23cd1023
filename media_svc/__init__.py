"""media_svc: uploaded images and video checked and sanitized, the blob stores that keep them, and
the service that takes uploads and serves them (`python -m media_svc`; server.py is its gRPC edge).

What other packages may use:

- `inspect_media(data, claimed_type) -> Media`, raising `MediaRefused` (its `refusal` says why);
- `BlobStore` and `open_blob_store(s3_url, local_dir)`, raising `BlobNotFound` and
  `BlobStoreUnavailable`.
"""

from media_svc.blobs import Blob, BlobStore, open_blob_store
from media_svc.errors import BlobNotFound, BlobStoreUnavailable, MediaRefused, Refusal
from media_svc.inspection import inspect_media
from media_svc.media import ACCEPTED_TYPES, MAX_UPLOAD_BYTES, Media

__all__ = [
    "ACCEPTED_TYPES",
    "MAX_UPLOAD_BYTES",
    "Blob",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreUnavailable",
    "Media",
    "MediaRefused",
    "Refusal",
    "inspect_media",
    "open_blob_store",
]
