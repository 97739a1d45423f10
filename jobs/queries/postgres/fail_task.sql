-- $5 is the retry time, NULL for a non-retryable error.
UPDATE tasks
SET state = CASE WHEN $5::timestamptz IS NOT NULL AND attempts < max_attempts
                 THEN 'ready' ELSE 'dead' END,
    run_after = COALESCE($5::timestamptz, run_after),
    error = $4, lease_owner = NULL, lease_expires_at = NULL,
    finished_at = CASE WHEN $5::timestamptz IS NOT NULL AND attempts < max_attempts
                       THEN NULL ELSE $6 END
WHERE id = $1 AND attempts = $2 AND lease_owner = $3 AND state = 'running'
RETURNING state, stage, run_after
