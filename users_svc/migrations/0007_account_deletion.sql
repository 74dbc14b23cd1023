-- Deleted accounts (DeleteUser). The row stays, hidden from every read by delete_time, with its
-- email address, password and profile erased in the deleting transaction; the account's follows,
-- blocks and mutes go afterwards, through its AccountEvent. The handle stays reserved for the
-- grace period (DELETED_HANDLE_GRACE_DAYS), then is released (set to NULL) when someone claims it.
ALTER TABLE users ADD COLUMN delete_time timestamptz;
ALTER TABLE users ALTER COLUMN handle DROP NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_handle_only_released CHECK (handle IS NOT NULL OR delete_time IS NOT NULL);
