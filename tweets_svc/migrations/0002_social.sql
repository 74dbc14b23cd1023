-- Deletes, retweets, likes, mentions, hashtags, full-text search and the global timeline.
ALTER TABLE tweets
    ADD COLUMN reply_to_author_id bigint,
    ADD COLUMN retweet_of_id      bigint REFERENCES tweets (id),
    ADD COLUMN like_count         bigint NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    ADD COLUMN retweet_count      bigint NOT NULL DEFAULT 0 CHECK (retweet_count >= 0),
    -- A deleted tweet keeps its row (replies point at it) but loses its text.
    ADD COLUMN delete_time        timestamptz,
    ADD COLUMN search             tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
ALTER TABLE tweets DROP CONSTRAINT tweets_text_check;
ALTER TABLE tweets ADD CONSTRAINT tweets_text_check CHECK (
    char_length(text) <= 280
    AND (char_length(text) >= 1 OR retweet_of_id IS NOT NULL OR delete_time IS NOT NULL)
);
UPDATE tweets t SET reply_to_author_id = p.author_id FROM tweets p WHERE p.id = t.reply_to_id;

-- A thread, oldest reply first.
CREATE INDEX tweets_replies ON tweets (reply_to_id, id) WHERE reply_to_id IS NOT NULL;
-- One live retweet per user and original; and the retweets to delete with their original.
CREATE UNIQUE INDEX tweets_one_retweet ON tweets (author_id, retweet_of_id)
    WHERE retweet_of_id IS NOT NULL AND delete_time IS NULL;
CREATE INDEX tweets_retweets ON tweets (retweet_of_id) WHERE retweet_of_id IS NOT NULL;
-- Full-text search over live tweets.
CREATE INDEX tweets_search ON tweets USING gin (search) WHERE delete_time IS NULL;
-- The global timeline: live originals and self-replies, newest first. The predicate is
-- repeated by the query (social.rules.IS_PUBLIC_SQL) so that the planner can use this index.
CREATE INDEX tweets_public ON tweets (id DESC)
    WHERE delete_time IS NULL AND retweet_of_id IS NULL
      AND (reply_to_author_id IS NULL OR reply_to_author_id = author_id);

CREATE SEQUENCE likes_id_seq;
CREATE TABLE likes (
    id          bigint      NOT NULL DEFAULT tm_next_id('likes_id_seq'),
    tweet_id    bigint      NOT NULL REFERENCES tweets (id),
    user_id     bigint      NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tweet_id, user_id)
);
-- Who liked a tweet, and what a user liked, most recent like first, without OFFSET.
CREATE UNIQUE INDEX likes_by_tweet ON likes (tweet_id, id DESC) INCLUDE (user_id);
CREATE UNIQUE INDEX likes_by_user ON likes (user_id, id DESC) INCLUDE (tweet_id);

-- @mentions of live tweets; `implicit` marks the author of the replied-to tweet, who counts as
-- mentioned (as on Twitter) without appearing in the text.
CREATE TABLE mentions (
    tweet_id bigint   NOT NULL REFERENCES tweets (id),
    user_id  bigint   NOT NULL,
    handle   text     NOT NULL,
    position smallint NOT NULL,
    implicit boolean  NOT NULL DEFAULT false,
    PRIMARY KEY (tweet_id, user_id)
);
CREATE INDEX mentions_by_user ON mentions (user_id, tweet_id DESC);

-- #hashtags of live tweets, lowercased, without the #.
CREATE TABLE hashtags (
    tweet_id bigint   NOT NULL REFERENCES tweets (id),
    tag      text     NOT NULL,
    position smallint NOT NULL,
    PRIMARY KEY (tweet_id, tag)
);
CREATE INDEX hashtags_by_tag ON hashtags (tag, tweet_id DESC);
