-- notifications_svc's schema. One row per (recipient, kind, actor, subject): a notification that
-- exists (active) or existed, with the action (`source_id`: a like, follow or tweet id, which only
-- grow) that last made or unmade it, so that events arriving late or twice change nothing.
CREATE SEQUENCE notifications_id_seq;
CREATE TABLE notifications (
    recipient_id bigint  NOT NULL,
    kind         text    NOT NULL CHECK (kind IN ('follow', 'mention', 'reply', 'like', 'retweet')),
    actor_id     bigint  NOT NULL,
    -- The tweet it is about (liked, retweeted; the mention or reply itself), 0 for a follow.
    subject_id   bigint  NOT NULL,
    -- Time-ordered; a new one each time the notification appears again.
    id           bigint  NOT NULL,
    source_id    bigint  NOT NULL,
    active       boolean NOT NULL,
    group_key    text    NOT NULL,
    PRIMARY KEY (recipient_id, kind, actor_id, subject_id)
);
-- A recipient's notifications, newest first (streams' replays, unread counts).
CREATE UNIQUE INDEX notifications_newest ON notifications (recipient_id, id DESC) WHERE active;
-- A group's notifications, newest first (its latest after one goes).
CREATE INDEX notifications_by_group ON notifications (recipient_id, group_key, id DESC) WHERE active;
-- A group's accounts, latest action first (its sample accounts: events of one stream are handled
-- concurrently, so the order they were handled in is not quite the order they were made in).
CREATE INDEX notifications_samples ON notifications (recipient_id, group_key, source_id DESC)
    INCLUDE (actor_id) WHERE active;
-- What a deleted tweet takes away.
CREATE INDEX notifications_by_subject ON notifications (subject_id) WHERE active AND subject_id <> 0;
-- Undone notifications, forgotten after a while.
CREATE INDEX notifications_undone ON notifications (source_id) WHERE NOT active;

-- The groups as listed: their count and latest notification kept with every change.
CREATE TABLE notification_groups (
    recipient_id bigint NOT NULL,
    group_key    text   NOT NULL,
    kind         text   NOT NULL,
    subject_id   bigint NOT NULL,
    latest_id    bigint NOT NULL,
    count        bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (recipient_id, group_key)
);
CREATE INDEX notification_groups_newest ON notification_groups (recipient_id, latest_id DESC);
CREATE INDEX notification_groups_by_subject ON notification_groups (subject_id) WHERE subject_id <> 0;

-- How far each recipient has read.
CREATE TABLE read_markers (
    recipient_id bigint PRIMARY KEY,
    read_up_to   bigint NOT NULL
);

-- Deleted tweets: an event about one that arrives after its deletion makes nothing.
CREATE TABLE deleted_tweets (
    tweet_id    bigint      PRIMARY KEY,
    delete_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deleted_tweets_by_time ON deleted_tweets (delete_time);
