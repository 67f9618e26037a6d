SELECT id, queue, payload::text, attempts, errors, crashes, lease_token, owner, lease_until, created_at
FROM {schema}.tasks WHERE owner = $1::text AND state = 'running' ORDER BY id
