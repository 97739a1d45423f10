SELECT stage FROM job_stages WHERE job_id = ?1 AND stage > ?2 AND total > 0
ORDER BY stage LIMIT 1
