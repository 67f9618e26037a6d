-- Every index that holds a running task costs each claim an insert (a claim's update can never
-- be HOT: it changes `state`). Three did; now one does: a partial index of running tasks by
-- (queue, owner) replaces those by lease and by owner (the running tasks are few, so finding
-- expired leases scans it whole; a renewal then touches no indexed column and stays in its
-- page), and the per-queue index leaves running tasks out. Two index inserts fewer per task
-- pay for keeping completed tasks (migration 7).
DROP INDEX {schema}.tasks_running_by_lease;
DROP INDEX {schema}.tasks_running_by_owner;
DROP INDEX {schema}.tasks_by_queue;
CREATE INDEX tasks_by_queue ON {schema}.tasks (queue, state, id) WHERE state <> 'running';
CREATE INDEX tasks_running ON {schema}.tasks (queue, owner) WHERE state = 'running';
