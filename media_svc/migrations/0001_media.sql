-- media_svc's schema: uploaded images and video (their bytes are in the blob store), whose they
-- are, and which tweet they are attached to.
CREATE SEQUENCE media_id_seq;
CREATE TABLE media (
    id                bigint      PRIMARY KEY DEFAULT tm_next_id('media_id_seq'),
    owner_id          bigint      NOT NULL,
    -- uploading: the row exists, its blobs may not yet (a crash leaves it for the sweeper);
    -- ready: stored and servable.
    state             text        NOT NULL CHECK (state IN ('uploading', 'ready')),
    content_type      text        NOT NULL,
    width             integer     NOT NULL CHECK (width > 0),
    height            integer     NOT NULL CHECK (height > 0),
    duration_ms       bigint      NOT NULL CHECK (duration_ms >= 0),
    frames            integer     NOT NULL CHECK (frames > 0),
    size_bytes        bigint      NOT NULL CHECK (size_bytes > 0),
    -- Hex SHA-256 of the stored bytes (the ETag); the thumbnail's, or NULL when there is none.
    sha256            text        NOT NULL,
    thumbnail_sha256  text,
    create_time       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_by_owner ON media (owner_id, id DESC);
