
    DELETE FROM erased_stamps
    WHERE digest IN (SELECT digest FROM erased_stamps WHERE as_of < {cutoff} LIMIT :batch)
    
