-- `state <> 'running'` (never true of the states purged) lets a generic plan use the
-- per-queue index, which leaves running tasks out (migration 10).
DELETE FROM {schema}.tasks WHERE queue = $1::text AND state = $2::text AND state <> 'running'
