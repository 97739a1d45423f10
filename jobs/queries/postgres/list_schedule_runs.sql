-- rows: what the job committed (its result), else what its tasks wrote so far.
SELECT r.slot, r.manual, r.fired_at, r.job_id, j.state, j.rows, j.result::text AS result,
       COALESCE(r.error, j.error) AS error
FROM schedule_runs r LEFT JOIN jobs j ON j.id = r.job_id
WHERE r.schedule_id = $1
ORDER BY r.slot DESC, r.id DESC LIMIT $2
