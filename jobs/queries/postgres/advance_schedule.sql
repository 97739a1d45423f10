UPDATE schedules SET cursor = $2 WHERE id = $1 AND (cursor IS NULL OR cursor < $2)
