-- The newest completed task of queue $1 beyond the $2 kept: it and every older one go.
SELECT completed_at, id FROM {schema}.completed WHERE queue = $1::text
ORDER BY completed_at DESC, id DESC LIMIT 1 OFFSET $2::bigint
