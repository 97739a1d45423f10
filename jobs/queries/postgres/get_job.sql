SELECT id, kind, spec::text AS spec, state, current_stage, tasks_total, tasks_done, tasks_failed,
       rows, bytes, result::text AS result, error, origin, origin_detail, created_at, started_at,
       finished_at, commit_task, cancel_requested_at
FROM jobs WHERE id = $1
