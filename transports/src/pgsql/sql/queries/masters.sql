-- The expired records go (the SELECT sees the table as it was before, hence its own filter).
WITH gone AS (DELETE FROM {schema}.masters WHERE expires_at <= $1::timestamptz)
SELECT record FROM {schema}.masters WHERE expires_at > $1::timestamptz ORDER BY id
