-- Edits: how many times a tweet was edited and when last, and the versions edits replaced.
ALTER TABLE tweets
    ADD COLUMN edit_count integer     NOT NULL DEFAULT 0 CHECK (edit_count >= 0),
    ADD COLUMN edit_time  timestamptz;
-- Version n (0 the first) of a tweet as it was before edit n + 1 replaced it: its text, its media
-- (each still held by the tweet in tweet_media) and when it was written. `request_id` is the
-- idempotency key of the edit that replaced it: a retried edit finds it and changes nothing.
CREATE TABLE tweet_versions (
    tweet_id   bigint      NOT NULL REFERENCES tweets (id),
    version_no integer     NOT NULL CHECK (version_no >= 0),
    text       text        NOT NULL,
    media_ids  bigint[]    NOT NULL DEFAULT '{}',
    write_time timestamptz NOT NULL,
    request_id text,
    PRIMARY KEY (tweet_id, version_no)
);
CREATE UNIQUE INDEX tweet_versions_by_request_id ON tweet_versions (tweet_id, request_id)
    WHERE request_id IS NOT NULL;
