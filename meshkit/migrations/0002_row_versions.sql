-- A trigger function for tables whose rows carry a version that every update counts up (an owner's
-- cache compares versions so that an entry is never replaced by an older form: social/caches.py).
-- A table opts in with: CREATE TRIGGER ... BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION count_version();
CREATE FUNCTION count_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;
