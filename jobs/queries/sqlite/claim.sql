-- One statement: SQLite has a single writer, so no SKIP LOCKED is needed.
UPDATE tasks
SET state = 'running', attempts = attempts + 1, lease_owner = ?1, lease_expires_at = ?2,
    started_at = ?3
WHERE id IN (
    SELECT id FROM tasks
    WHERE state = 'ready' AND run_after <= ?3
    ORDER BY run_after, id
    LIMIT ?4
)
RETURNING id, job_id, kind, stage, attempts, max_attempts, payload, run_after
