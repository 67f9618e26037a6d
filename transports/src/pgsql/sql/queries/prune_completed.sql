-- The oldest chunk ($5 at most) of queue $1's completed tasks that go: completed before $2, or
-- at $3 with an id up to $4 (the cap's cut-off).
DELETE FROM {schema}.completed WHERE id = ANY(ARRAY(
    SELECT id FROM {schema}.completed WHERE queue = $1::text
       AND (completed_at < $2::timestamptz OR (completed_at = $3::timestamptz AND id <= $4::bigint))
    ORDER BY completed_at, id LIMIT $5::bigint))
