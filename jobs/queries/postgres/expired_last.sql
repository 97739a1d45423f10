-- Expired leases on a task's last attempt: the caller fails them.
SELECT id, job_id, attempts, lease_owner, lost_workers FROM tasks
WHERE state = 'running' AND lease_expires_at < $1 AND attempts >= max_attempts
