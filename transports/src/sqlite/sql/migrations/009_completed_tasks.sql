-- Completed tasks are kept (state 'done', run_at the time they completed) with the worker's
-- result until pruned; every attempt records when it was claimed.
ALTER TABLE tasks ADD COLUMN started_at INTEGER;
ALTER TABLE tasks ADD COLUMN result TEXT;
