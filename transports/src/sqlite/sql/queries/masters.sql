SELECT record FROM masters WHERE expires_at > ?1 ORDER BY id
