-- The conflict target is the partial unique index schedule_runs_once: a second automatic
-- firing of a slot inserts nothing and returns no row.
INSERT INTO schedule_runs (schedule_id, slot, manual, error, fired_at)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (schedule_id, slot) WHERE manual = 0 DO NOTHING
RETURNING id
