UPDATE jobs SET current_stage = $3
WHERE id = $1 AND current_stage = $2 AND state IN ('queued', 'running')
