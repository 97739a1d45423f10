INSERT INTO job_stages (job_id, stage, total)
SELECT $1, s.stage, s.total FROM UNNEST($2::int[], $3::bigint[]) AS s (stage, total)
ON CONFLICT (job_id, stage) DO UPDATE SET total = job_stages.total + excluded.total
