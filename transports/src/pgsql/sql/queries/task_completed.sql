SELECT id, queue, 'done'::text, payload::text, attempts, errors, crashes, last_error, history::text, created_at, completed_at, NULL::text, result::text
FROM {schema}.completed WHERE id = $1::bigint
