
    WITH expired AS (
        SELECT key, role, role_as_of, role_job_id
        FROM user_states
        WHERE pending_since IS NOT NULL AND NOT intent_reported
          AND pending_since < now() - make_interval(secs => :window)
        ORDER BY pending_since
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ),
    marked AS (
        UPDATE user_states s SET intent_reported = true FROM expired e WHERE s.key = e.key
    )
    SELECT key, role, role_as_of, role_job_id FROM expired
    
