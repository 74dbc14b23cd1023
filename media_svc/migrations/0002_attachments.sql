-- Media attached to tweets, claims by tweets being posted, and collection of what nobody attached.
ALTER TABLE media
    -- The tweet it is attached to (tweets_svc holds the attachment; this is what media_svc learnt
    -- of it from the tweet's creation event, or asked when it was about to collect the media).
    ADD COLUMN tweet_id bigint,
    -- Until then a tweet being posted has reserved it: the sweeper leaves it alone.
    ADD COLUMN claim_expire_time timestamptz;
-- collecting: the sweeper is deleting it (no longer served or claimable).
ALTER TABLE media DROP CONSTRAINT media_state_check;
ALTER TABLE media ADD CONSTRAINT media_state_check CHECK (state IN ('uploading', 'ready', 'collecting'));
-- The sweeper's candidates: unattached media, oldest first.
CREATE INDEX media_unattached ON media (create_time) WHERE tweet_id IS NULL;
