-- Guarded by (id, attempt, lease owner): a stale attempt matches nothing.
UPDATE tasks
SET state = 'done', result = ?4, error = NULL, lease_owner = NULL, lease_expires_at = NULL,
    finished_at = ?5
WHERE id = ?1 AND attempts = ?2 AND lease_owner = ?3 AND state = 'running'
RETURNING stage
