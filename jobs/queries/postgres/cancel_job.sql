UPDATE jobs SET state = 'cancelled', finished_at = $2 WHERE id = $1
