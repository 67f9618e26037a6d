DELETE FROM {schema}.tasks WHERE queue = $1::text AND state = $2::text
