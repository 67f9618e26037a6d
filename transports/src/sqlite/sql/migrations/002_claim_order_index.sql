DROP INDEX tasks_by_queue;
CREATE INDEX tasks_claim_order ON tasks (queue, state, run_at, id);
