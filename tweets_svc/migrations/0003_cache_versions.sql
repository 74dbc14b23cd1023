-- Every change of a row counts up its version, which the owner's Redis cache (social/caches.py)
-- compares so that an entry is never replaced by an older form. A missing author_stats row is
-- version 0, so rows start at 1.
ALTER TABLE tweets ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE author_stats ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE FUNCTION count_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;
CREATE TRIGGER tweets_version BEFORE UPDATE ON tweets
    FOR EACH ROW EXECUTE FUNCTION count_version();
CREATE TRIGGER author_stats_version BEFORE UPDATE ON author_stats
    FOR EACH ROW EXECUTE FUNCTION count_version();
