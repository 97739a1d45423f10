UPDATE jobs SET state = 'succeeded', result = ?3, finished_at = ?4
WHERE id = ?1 AND current_stage = ?2 AND state IN ('queued', 'running')
