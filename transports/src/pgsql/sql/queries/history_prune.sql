DELETE FROM {schema}.history WHERE minute < $1
