SELECT pg_try_advisory_lock($1::integer, hashtext($2::text))
