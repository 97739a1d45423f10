SELECT result::text FROM tasks WHERE job_id = $1 AND stage = $2 AND state = 'done' LIMIT 1
