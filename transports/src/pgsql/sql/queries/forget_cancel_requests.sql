DELETE FROM {schema}.cancel_requests
WHERE id NOT IN (SELECT id FROM {schema}.tasks WHERE state = 'running')
