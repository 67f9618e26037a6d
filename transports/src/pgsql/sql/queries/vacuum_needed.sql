SELECT current_setting('autovacuum')::bool,
       coalesce(s.n_dead_tup, 0), coalesce(s.n_live_tup, 0)
FROM (SELECT 1) AS one
LEFT JOIN pg_stat_user_tables s ON s.relid = to_regclass($1::text)
