SELECT id, result::text FROM tasks WHERE job_id = $1 AND stage = $2 AND state = 'done' ORDER BY id
