CREATE INDEX tasks_ready ON tasks (queue, run_at, id) WHERE state = 'pending';
