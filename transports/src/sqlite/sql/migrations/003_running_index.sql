DROP INDEX tasks_by_lease;
DROP INDEX tasks_by_owner;
CREATE INDEX tasks_running ON tasks (lease_until) WHERE state = 'running';
