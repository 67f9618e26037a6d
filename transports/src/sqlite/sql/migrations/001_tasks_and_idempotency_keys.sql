CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    run_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    lease_token INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until INTEGER,
    last_error TEXT,
    history TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX tasks_by_queue ON tasks (queue, state, id);
CREATE INDEX tasks_by_lease ON tasks (state, lease_until);
CREATE INDEX tasks_by_owner ON tasks (owner);
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    task_id INTEGER,
    created_at INTEGER
);
