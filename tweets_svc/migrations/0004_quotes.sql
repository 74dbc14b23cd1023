-- Quote tweets: a tweet that shows another, and how many live tweets quote each.
ALTER TABLE tweets
    ADD COLUMN quote_of_id bigint REFERENCES tweets (id),
    ADD COLUMN quote_count bigint NOT NULL DEFAULT 0 CHECK (quote_count >= 0);
-- The quotes of a tweet, newest first.
CREATE INDEX tweets_quotes ON tweets (quote_of_id, id DESC) WHERE quote_of_id IS NOT NULL;
