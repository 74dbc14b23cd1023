-- Blocks and mutes. A block removes the follows both ways and stops the two from interacting or
-- seeing each other; a mute silently hides the muted account from the muter's home timeline,
-- stream and notifications. Lists page by id, newest first.
CREATE SEQUENCE blocks_id_seq;
CREATE TABLE blocks (
    id          bigint      NOT NULL DEFAULT tm_next_id('blocks_id_seq'),
    blocker_id  bigint      NOT NULL REFERENCES users (id),
    blocked_id  bigint      NOT NULL REFERENCES users (id),
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE UNIQUE INDEX blocks_by_blocker ON blocks (blocker_id, id DESC) INCLUDE (blocked_id);
CREATE INDEX blocks_by_blocked ON blocks (blocked_id) INCLUDE (blocker_id);

CREATE SEQUENCE mutes_id_seq;
CREATE TABLE mutes (
    id          bigint      NOT NULL DEFAULT tm_next_id('mutes_id_seq'),
    muter_id    bigint      NOT NULL REFERENCES users (id),
    muted_id    bigint      NOT NULL REFERENCES users (id),
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (muter_id, muted_id),
    CHECK (muter_id <> muted_id)
);
CREATE UNIQUE INDEX mutes_by_muter ON mutes (muter_id, id DESC) INCLUDE (muted_id);

-- Bumped in the transaction of every change of a user's relations (theirs or someone else's with
-- them): the Redis cache of a user's relations (social/relations.py) is written only if it did not
-- move meanwhile.
ALTER TABLE users ADD COLUMN relations_version bigint NOT NULL DEFAULT 0;
