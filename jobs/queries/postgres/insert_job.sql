INSERT INTO jobs (kind, spec, state, current_stage, tasks_total, origin, origin_detail, created_at)
VALUES ($1, $2::jsonb, 'queued', $3, $4, $5, $6, $7)
RETURNING id
