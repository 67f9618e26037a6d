SELECT pg_notify($1::text, message) FROM unnest($2::text[]) AS message
