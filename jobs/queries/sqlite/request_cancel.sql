UPDATE jobs SET cancel_requested_at = ?2 WHERE id = ?1
