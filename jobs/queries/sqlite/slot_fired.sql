SELECT EXISTS (SELECT 1 FROM schedule_runs WHERE schedule_id = ?1 AND slot = ?2 AND manual = 0)
