SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity
    WHERE application_name = $1::text AND datname = current_database()
)
