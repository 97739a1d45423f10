-- Expired leases with attempts left: claimable again at once.
UPDATE tasks SET state = 'ready', run_after = ?1, lease_owner = NULL, lease_expires_at = NULL
WHERE state = 'running' AND lease_expires_at < ?1 AND attempts < max_attempts
