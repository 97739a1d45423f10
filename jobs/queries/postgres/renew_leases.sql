UPDATE tasks SET lease_expires_at = $2 WHERE lease_owner = $1 AND state = 'running'
