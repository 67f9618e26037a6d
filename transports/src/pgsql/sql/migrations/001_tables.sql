CREATE TABLE {schema}.tasks (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT COLLATE "C" NOT NULL,
    payload JSON NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'failed', 'done')),
    run_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    lease_token BIGINT NOT NULL DEFAULT 0,
    owner TEXT COLLATE "C",
    lease_until TIMESTAMPTZ,
    last_error TEXT,
    history JSONB NOT NULL DEFAULT '[]'
);
CREATE INDEX tasks_by_queue ON {schema}.tasks (queue, state, id);
CREATE INDEX tasks_pending_by_run_at ON {schema}.tasks (queue, run_at) WHERE state = 'pending';
CREATE INDEX tasks_running_by_lease ON {schema}.tasks (lease_until) WHERE state = 'running';
CREATE INDEX tasks_running_by_owner ON {schema}.tasks (owner) WHERE state = 'running';
CREATE TABLE {schema}.idempotency_keys (
    key TEXT COLLATE "C" PRIMARY KEY,
    task_id BIGINT,
    created_at TIMESTAMPTZ NOT NULL
);
