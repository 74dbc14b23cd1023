-- Images and video attached to tweets. media_svc keeps their bytes; this is what a tweet shows of
-- them, as they were when attached (media never changes), and which tweet holds each.
CREATE TABLE tweet_media (
    -- A media is attached to one tweet at most: two posts racing for one fail here.
    media_id      bigint  PRIMARY KEY,
    tweet_id      bigint  NOT NULL REFERENCES tweets (id),
    content_type  text    NOT NULL,
    width         integer NOT NULL,
    height        integer NOT NULL,
    duration_ms   bigint  NOT NULL,
    url           text    NOT NULL,
    thumbnail_url text    NOT NULL,
    alt_text      text    NOT NULL DEFAULT ''
);
CREATE INDEX tweet_media_by_tweet ON tweet_media (tweet_id);

-- The media a tweet shows, in order. A tweet with media may have no text.
ALTER TABLE tweets ADD COLUMN media_ids bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE tweets DROP CONSTRAINT tweets_text_check;
ALTER TABLE tweets ADD CONSTRAINT tweets_text_check CHECK (
    char_length(text) <= 280
    AND (
        char_length(text) >= 1 OR retweet_of_id IS NOT NULL OR delete_time IS NOT NULL
        OR cardinality(media_ids) > 0
    )
);
