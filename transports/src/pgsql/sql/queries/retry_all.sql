UPDATE {schema}.tasks SET state = 'pending', run_at = $1::timestamptz,
    attempts = 0, errors = 0, crashes = 0 WHERE state = 'failed' RETURNING id, queue
