SELECT id, name, cron, timezone, template, catch_up, paused, cursor, created_at
FROM schedules WHERE (?1 IS NULL OR name = ?1)
ORDER BY name
