-- Completed tasks move from `tasks` to a table of their own, with the worker's result, until
-- pruned: the delivery table stays as small as when they were deleted, and a completion is
-- a delete plus an insert into a table with two indexes (no update of the claim indexes).
ALTER TABLE {schema}.tasks ADD COLUMN started_at BIGINT;
CREATE TABLE {schema}.completed (
    id BIGINT PRIMARY KEY,
    queue TEXT COLLATE "C" NOT NULL,
    payload JSON NOT NULL,
    result JSON,
    created_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    crashes INTEGER NOT NULL,
    last_error TEXT,
    history JSONB NOT NULL
);
CREATE INDEX completed_by_queue ON {schema}.completed (queue, completed_at, id);
