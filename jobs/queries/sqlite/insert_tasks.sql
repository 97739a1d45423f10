-- Many tasks in one statement: ?4 is a JSON array of [stage, payload text, state,
-- max_attempts] rows, the counterpart of PostgreSQL's UNNEST; one statement per row cost
-- a round trip to sqlx's connection thread each (14,000 tasks/s).
INSERT INTO tasks (job_id, kind, stage, payload, state, max_attempts, run_after, created_at)
SELECT ?1, ?2, value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?3, ?3
FROM json_each(?4)
ORDER BY key
