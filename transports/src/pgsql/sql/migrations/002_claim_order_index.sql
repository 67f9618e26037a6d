DROP INDEX {schema}.tasks_pending_by_run_at;
CREATE INDEX tasks_pending_by_due ON {schema}.tasks (queue, run_at, id) WHERE state = 'pending';
