SELECT pg_advisory_xact_lock($1::integer, hashtext($2::text))
