-- Cancellations of running attempts, for their masters to act on (kept an hour).
CREATE TABLE {schema}.cancel_requests (
    id BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, attempt)
);
