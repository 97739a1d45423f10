-- Resuming moves the cursor to now: slots that passed while paused are skipped, not
-- caught up.
UPDATE schedules
SET paused = ?2,
    cursor = CASE WHEN ?2 = 0 THEN max(coalesce(cursor, ?3), ?3) ELSE cursor END
WHERE name = ?1
