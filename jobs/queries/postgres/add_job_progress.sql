UPDATE jobs
SET tasks_done = tasks_done + $2, rows = rows + $3, bytes = bytes + $4,
    tasks_total = tasks_total + $5
WHERE id = $1
