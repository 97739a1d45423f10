SELECT state, current_stage FROM jobs WHERE id = $1 FOR UPDATE
