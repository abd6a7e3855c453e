{merge}
    SELECT status, CASE WHEN new_provisioned OR status = 'deleted' THEN id END,
           CASE WHEN new_provisioned THEN new_email ELSE email END, new_provisioned,
           CASE WHEN new_provisioned THEN new_role END, new_provisioned AND new_active, position
    FROM outcome
    ORDER BY position
    
