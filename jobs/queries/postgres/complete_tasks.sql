-- Guarded by (id, attempt, lease owner): a stale attempt matches nothing.
UPDATE tasks t
SET state = 'done', result = c.result::jsonb, error = NULL, lease_owner = NULL,
    lease_expires_at = NULL, finished_at = $5
FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[]) AS c (id, attempt, owner, result)
WHERE t.id = c.id AND t.attempts = c.attempt AND t.lease_owner = c.owner AND t.state = 'running'
RETURNING t.id, t.stage
