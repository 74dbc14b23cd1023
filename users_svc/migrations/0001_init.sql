-- users_svc's schema: accounts, hashed sessions and the follow graph with exact counts.
CREATE SEQUENCE users_id_seq;
CREATE TABLE users (
    id              bigint      PRIMARY KEY DEFAULT tm_next_id('users_id_seq'),
    handle          text        NOT NULL CHECK (handle ~ '^[A-Za-z0-9_]{1,15}$'),
    display_name    text        NOT NULL CHECK (char_length(display_name) <= 50),
    password_hash   text        NOT NULL,
    followers_count bigint      NOT NULL DEFAULT 0 CHECK (followers_count >= 0),
    following_count bigint      NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    create_time     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_handle_key ON users (lower(handle));

-- Only a SHA-256 digest of each token is kept.
CREATE TABLE sessions (
    token_hash  bytea       PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id),
    create_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE SEQUENCE follows_id_seq;
CREATE TABLE follows (
    id          bigint      NOT NULL DEFAULT tm_next_id('follows_id_seq'),
    follower_id bigint      NOT NULL REFERENCES users (id),
    followee_id bigint      NOT NULL REFERENCES users (id),
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
-- Lists page by follow id, newest first, without OFFSET.
CREATE UNIQUE INDEX follows_by_followee ON follows (followee_id, id DESC) INCLUDE (follower_id);
CREATE UNIQUE INDEX follows_by_follower ON follows (follower_id, id DESC) INCLUDE (followee_id);
