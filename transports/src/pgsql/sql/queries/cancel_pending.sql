UPDATE {schema}.tasks SET state = 'failed', run_at = $3, last_error = $2::text, owner = NULL,
    lease_until = NULL,
    history = history || jsonb_build_array(jsonb_build_object('attempt', attempts,
        'owner', '', 'outcome', 'cancelled', 'reason', $2::text, 'finished_at', $4::bigint))
WHERE id = $1 AND state = 'pending'
