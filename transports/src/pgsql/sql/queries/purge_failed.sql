DELETE FROM {schema}.tasks WHERE id = ANY($1::bigint[]) AND state = 'failed'
