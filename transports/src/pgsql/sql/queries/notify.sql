SELECT pg_notify($1::text, queue) FROM unnest($2::text[]) AS queue
