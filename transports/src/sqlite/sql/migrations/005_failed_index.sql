CREATE INDEX tasks_failed ON tasks (id) WHERE state = 'failed';
