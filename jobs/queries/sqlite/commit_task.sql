SELECT commit_task FROM jobs WHERE id = ?1
