
    INSERT INTO user_states (key, key_version)
    SELECT DISTINCT k COLLATE "C", CAST(:key_version AS smallint)
    FROM unnest(CAST(:keys AS text[])) AS k
    ORDER BY 1
    {hold}
    
