-- The mail outbox (mail/outbox.py, mail/postgres.py): a mail is queued in the transaction that asks
-- for it and sent afterwards by the relay. `message` is NULL once the row is settled (sent or
-- given up): it may hold a token.
CREATE TABLE mail_outbox (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender            text        NOT NULL,
    recipient         text        NOT NULL,
    message           bytea,
    create_time       timestamptz NOT NULL DEFAULT now(),
    discard_time      timestamptz,
    next_attempt_time timestamptz NOT NULL DEFAULT now(),
    attempts          integer     NOT NULL DEFAULT 0,
    last_error        text,
    sent_time         timestamptz,
    failed_time       timestamptz,
    CHECK ((message IS NULL) = (sent_time IS NOT NULL OR failed_time IS NOT NULL))
);
-- The relay's scan: only unsettled rows, by when they are due.
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_time)
    WHERE sent_time IS NULL AND failed_time IS NULL;
-- Settled rows are kept for a while for operators, then deleted (by their settle time).
CREATE INDEX mail_outbox_settled ON mail_outbox (coalesce(sent_time, failed_time))
    WHERE sent_time IS NOT NULL OR failed_time IS NOT NULL;
