-- Bookmarks: tweets a user keeps for later, seen by that user only.
CREATE SEQUENCE bookmarks_id_seq;
CREATE TABLE bookmarks (
    id          bigint      NOT NULL DEFAULT tm_next_id('bookmarks_id_seq'),
    user_id     bigint      NOT NULL,
    tweet_id    bigint      NOT NULL REFERENCES tweets (id),
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, tweet_id)
);
-- A user's bookmarks, most recent first, without OFFSET.
CREATE UNIQUE INDEX bookmarks_by_user ON bookmarks (user_id, id DESC) INCLUDE (tweet_id);
-- A tweet's bookmarks go with it.
CREATE INDEX bookmarks_by_tweet ON bookmarks (tweet_id);
