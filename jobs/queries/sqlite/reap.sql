-- Expired leases with attempts left: claimable again at once, the lost worker counted.
UPDATE tasks SET state = 'ready', run_after = ?1, lease_owner = NULL, lease_expires_at = NULL,
    lost_workers = lost_workers + 1,
    error = 'worker ' || lease_owner || ' was lost (its lease expired) on attempt ' || attempts
WHERE state = 'running' AND lease_expires_at < ?1 AND attempts < max_attempts
