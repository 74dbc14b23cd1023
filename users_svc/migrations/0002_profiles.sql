-- Profiles (bio) and user search by handle or display-name prefix.
ALTER TABLE users ADD COLUMN bio text NOT NULL DEFAULT '' CHECK (char_length(bio) <= 160);
-- Prefix search uses byte order (COLLATE "C") so that LIKE 'abc%' becomes an index range scan
-- whatever the database's locale; the id breaks ties between equal display names.
CREATE INDEX users_handle_prefix ON users ((lower(handle) COLLATE "C"));
CREATE INDEX users_name_prefix ON users ((lower(display_name) COLLATE "C"), id);
