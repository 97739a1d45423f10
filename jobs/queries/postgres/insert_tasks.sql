-- All of a job's tasks in one statement: arrays instead of one round trip per task.
INSERT INTO tasks (job_id, kind, stage, payload, state, max_attempts, run_after, created_at)
SELECT $1, $2, t.stage, t.payload::jsonb, t.state, t.max_attempts, $3, $3
FROM UNNEST($4::int[], $5::text[], $6::text[], $7::int[]) AS t (stage, payload, state, max_attempts)
