UPDATE tasks
SET state = 'ready', attempts = 0, run_after = $3, error = NULL, finished_at = NULL,
    lease_owner = NULL, lease_expires_at = NULL, lost_workers = 0
WHERE job_id = $1 AND stage = $2 AND state IN ('dead', 'cancelled')
