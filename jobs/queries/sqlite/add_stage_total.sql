INSERT INTO job_stages (job_id, stage, total) VALUES (?1, ?2, ?3)
ON CONFLICT (job_id, stage) DO UPDATE SET total = total + excluded.total
