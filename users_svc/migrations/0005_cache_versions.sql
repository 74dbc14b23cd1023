-- Every change of a user row counts up its version (meshkit's count_version), which users_svc's
-- Redis cache (social/caches.py) compares so that an entry is never replaced by an older form.
ALTER TABLE users ADD COLUMN version bigint NOT NULL DEFAULT 1;
CREATE TRIGGER users_version BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION count_version();
