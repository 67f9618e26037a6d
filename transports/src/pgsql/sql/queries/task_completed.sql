-- The last attempt is in columns of its own (migration 8), added to the history here.
SELECT id, queue, 'done'::text, payload::text, attempts, errors, crashes, last_error,
    (CASE WHEN owner IS NULL THEN history ELSE history || jsonb_build_array(jsonb_build_object(
        'attempt', attempts, 'owner', owner, 'outcome', 'done'::text, 'started_at', started_at,
        'finished_at', floor(extract(epoch FROM completed_at) * 1000)::bigint)) END)::text,
    created_at, completed_at, NULL::text, result::text
FROM {schema}.completed WHERE id = $1::bigint
