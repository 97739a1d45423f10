-- Every writing transaction locks its jobs first, in id order, so none can deadlock.
SELECT id, kind FROM jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE
