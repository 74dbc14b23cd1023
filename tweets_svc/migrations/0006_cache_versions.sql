-- Every change of a row counts up its version (meshkit's count_version), which tweets_svc's Redis
-- cache (social/caches.py) compares so that an entry is never replaced by an older form. A missing
-- author_stats row is version 0, so rows start at 1.
ALTER TABLE tweets ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE author_stats ADD COLUMN version bigint NOT NULL DEFAULT 1;
CREATE TRIGGER tweets_version BEFORE UPDATE ON tweets
    FOR EACH ROW EXECUTE FUNCTION count_version();
CREATE TRIGGER author_stats_version BEFORE UPDATE ON author_stats
    FOR EACH ROW EXECUTE FUNCTION count_version();
