UPDATE tasks t
SET state = 'ready', attempts = t.attempts - 1, lease_owner = NULL, lease_expires_at = NULL
FROM UNNEST($1::bigint[], $2::int[], $3::text[]) AS r (id, attempt, owner)
WHERE t.id = r.id AND t.attempts = r.attempt AND t.lease_owner = r.owner AND t.state = 'running'
