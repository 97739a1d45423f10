UPDATE jobs SET state = 'running', error = NULL, tasks_failed = 0, finished_at = NULL
WHERE id = $1
