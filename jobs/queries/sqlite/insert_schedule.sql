INSERT INTO schedules (name, cron, timezone, template, catch_up, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
RETURNING id
