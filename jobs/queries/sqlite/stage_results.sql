SELECT id, result FROM tasks WHERE job_id = ?1 AND stage = ?2 AND state = 'done' ORDER BY id
