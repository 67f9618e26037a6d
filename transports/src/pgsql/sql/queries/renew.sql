UPDATE {schema}.tasks SET lease_until = $1::timestamptz
WHERE state = 'running' AND owner = ANY($2::text[])
