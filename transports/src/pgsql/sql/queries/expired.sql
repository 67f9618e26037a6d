SELECT id, queue, payload::text, attempts, errors, crashes, lease_token, owner, lease_until, created_at
FROM {schema}.tasks WHERE state = 'running' AND lease_until < $1::timestamptz ORDER BY id
