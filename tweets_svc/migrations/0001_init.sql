-- tweets_svc's schema: tweets, per-author counts, and idempotency keys for CreateTweet.
CREATE SEQUENCE tweets_id_seq;
CREATE TABLE tweets (
    id          bigint      PRIMARY KEY DEFAULT tm_next_id('tweets_id_seq'),
    author_id   bigint      NOT NULL,
    text        text        NOT NULL CHECK (char_length(text) BETWEEN 1 AND 280),
    reply_to_id bigint      REFERENCES tweets (id),
    reply_count bigint      NOT NULL DEFAULT 0 CHECK (reply_count >= 0),
    request_id  text,
    create_time timestamptz NOT NULL DEFAULT now()
);
-- User timelines and timeline rebuilds read by author, newest first.
CREATE INDEX tweets_by_author ON tweets (author_id, id DESC);
-- A retried CreateTweet finds the tweet its request_id already made.
CREATE UNIQUE INDEX tweets_by_request_id ON tweets (author_id, request_id) WHERE request_id IS NOT NULL;

CREATE TABLE author_stats (
    author_id    bigint PRIMARY KEY,
    tweets_count bigint NOT NULL DEFAULT 0 CHECK (tweets_count >= 0)
);
