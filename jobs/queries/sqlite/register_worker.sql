INSERT INTO workers (id, host, pid, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?4)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
    started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at
