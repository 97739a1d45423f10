SELECT pg_notify('terrace_tasks', '')
