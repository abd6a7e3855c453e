{merge}
    SELECT count(*) FILTER (WHERE status = 'created'), count(*) FILTER (WHERE status = 'updated'),
           count(*) FILTER (WHERE status = 'unchanged'), count(*) FILTER (WHERE status = 'superseded'),
           coalesce(array_agg(position - 1 ORDER BY position) FILTER (WHERE status = 'refused'), '{}')
    FROM n
    
