
    DELETE FROM user_states d
    USING (SELECT s.key FROM user_states s WHERE {stale} LIMIT :batch FOR UPDATE OF s SKIP LOCKED) doomed
    WHERE d.key = doomed.key
    
