-- SKIP LOCKED lets concurrent claimers take disjoint batches without waiting on each other.
WITH picked AS (
    SELECT id FROM tasks
    WHERE state = 'ready' AND run_after <= $3
    ORDER BY run_after, id
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE tasks t
    SET state = 'running', attempts = t.attempts + 1, lease_owner = $1, lease_expires_at = $2,
        started_at = $3
    FROM picked
    WHERE t.id = picked.id
    RETURNING t.id, t.job_id, t.kind, t.stage, t.attempts, t.max_attempts, t.payload::text AS payload,
              t.run_after
), started AS (
    UPDATE jobs SET state = 'running', started_at = $3
    WHERE state = 'queued' AND id IN (SELECT DISTINCT job_id FROM claimed)
)
SELECT id, job_id, kind, stage, attempts, max_attempts, payload, run_after FROM claimed
ORDER BY run_after, id
