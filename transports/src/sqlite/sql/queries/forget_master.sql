DELETE FROM masters WHERE id = ?1
