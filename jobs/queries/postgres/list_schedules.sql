SELECT id, name, cron, timezone, template::text AS template, catch_up, paused, cursor,
       created_at
FROM schedules WHERE ($1::text IS NULL OR name = $1)
ORDER BY name
