SELECT id, job_id, stage, state, attempts, max_attempts, run_after, lease_owner,
       lease_expires_at, result::text AS result, error
FROM tasks WHERE job_id = $1 ORDER BY id
