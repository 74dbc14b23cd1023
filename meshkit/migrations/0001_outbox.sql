-- The transactional outbox every service that publishes events keeps in its own schema: an event
-- row is written in the same transaction as the change it announces, then relayed to a Redis stream.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    stream      text        NOT NULL,
    payload     bytea       NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);
