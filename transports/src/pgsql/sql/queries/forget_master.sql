DELETE FROM {schema}.masters WHERE id = $1::text
