UPDATE tasks SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, finished_at = ?2
WHERE job_id = ?1 AND state IN ('blocked', 'ready', 'running')
