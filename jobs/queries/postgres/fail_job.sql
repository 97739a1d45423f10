UPDATE jobs SET state = 'failed', error = $2, tasks_failed = tasks_failed + 1, finished_at = $3
WHERE id = $1 AND state IN ('queued', 'running')
