-- The fan-in decision: the completion whose increment makes done reach total owns it.
UPDATE job_stages SET done = done + ?3 WHERE job_id = ?1 AND stage = ?2
RETURNING done, total
