DELETE FROM masters WHERE expires_at <= ?1
