DELETE FROM tasks WHERE job_id IN (SELECT id FROM jobs WHERE finished_at < ?1)
