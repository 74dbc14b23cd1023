-- Email addresses of accounts (mail/addresses.py): stored as given (the domain lowercased), unique
-- ignoring case through email_key; verified when the account used a token mailed to it.
ALTER TABLE users
    ADD COLUMN email             text CHECK (octet_length(email) <= 254),
    ADD COLUMN email_key         text CHECK (email_key IS NULL OR email_key = lower(email)),
    ADD COLUMN email_verify_time timestamptz,
    ADD CONSTRAINT users_email_pair CHECK ((email IS NULL) = (email_key IS NULL)),
    ADD CONSTRAINT users_email_verified_has_email CHECK (email_verify_time IS NULL OR email IS NOT NULL);
CREATE UNIQUE INDEX users_email_key ON users (email_key);

-- Single-use tokens mailed to prove control of an address (mail/tokens.py): only their SHA-256.
CREATE TABLE account_tokens (
    token_hash  bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    purpose     text        NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address_key text        NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz NOT NULL,
    use_time    timestamptz,
    CHECK (expire_time > create_time)
);
CREATE INDEX account_tokens_by_user ON account_tokens (user_id, purpose);
-- Expired tokens are deleted by their expiry.
CREATE INDEX account_tokens_by_expiry ON account_tokens (expire_time);
