CREATE TABLE paused_queues (
    queue TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE masters (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
