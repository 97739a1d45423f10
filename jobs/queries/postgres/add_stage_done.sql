-- The fan-in decision: the completion whose increment makes done reach total owns it.
-- The row lock serialises concurrent increments, so exactly one sees done = total.
UPDATE job_stages SET done = done + $3 WHERE job_id = $1 AND stage = $2
RETURNING done, total
