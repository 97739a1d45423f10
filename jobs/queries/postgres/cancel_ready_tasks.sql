-- When a task dies, the rest of its stage stops; blocked stages stay blocked.
UPDATE tasks SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, finished_at = $2
WHERE job_id = $1 AND state IN ('ready', 'running')
