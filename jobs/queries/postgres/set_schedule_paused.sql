-- Resuming moves the cursor to now: slots that passed while paused are skipped, not
-- caught up.
UPDATE schedules
SET paused = $2,
    cursor = CASE WHEN NOT $2 THEN GREATEST(COALESCE(cursor, $3), $3) ELSE cursor END
WHERE name = $1
