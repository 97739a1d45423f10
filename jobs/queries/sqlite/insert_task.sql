INSERT INTO tasks (job_id, kind, stage, payload, state, max_attempts, run_after, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
