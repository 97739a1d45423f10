UPDATE tasks SET state = 'ready', run_after = $3
WHERE job_id = $1 AND stage = $2 AND state = 'blocked'
