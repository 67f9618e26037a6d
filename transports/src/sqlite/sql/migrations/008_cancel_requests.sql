-- Cancellations of running attempts, for their masters to act on (kept an hour).
CREATE TABLE cancel_requests (
    id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    requested_at INTEGER NOT NULL,
    PRIMARY KEY (id, attempt)
) WITHOUT ROWID;
