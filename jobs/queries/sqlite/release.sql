UPDATE tasks
SET state = 'ready', attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL
WHERE id = ?1 AND attempts = ?2 AND lease_owner = ?3 AND state = 'running'
