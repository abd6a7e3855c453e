
    INSERT INTO user_states (key, key_version, inserted_by, role, pending_since,
                             provisioned_as_of, provisioned_job_id, role_as_of, role_job_id,
                             active_as_of, active_job_id, password_as_of, password_job_id,
                             external_id_as_of, external_id_job_id)
    SELECT key, CAST(:key_version AS smallint), CAST(:token AS uuid),
           CASE WHEN ok AND function = 'set_user_role' THEN role END,
           CASE WHEN ok AND function = 'set_user_role' THEN now() END,
           CASE WHEN ok AND n_p THEN as_of ELSE 0 END, CASE WHEN ok AND n_p THEN job_id ELSE '' END,
           CASE WHEN ok AND n_r THEN as_of ELSE 0 END, CASE WHEN ok AND n_r THEN job_id ELSE '' END,
           CASE WHEN ok AND n_a THEN as_of ELSE 0 END, CASE WHEN ok AND n_a THEN job_id ELSE '' END,
           CASE WHEN ok AND n_h THEN as_of ELSE 0 END, CASE WHEN ok AND n_h THEN job_id ELSE '' END,
           CASE WHEN ok AND n_x THEN as_of ELSE 0 END, CASE WHEN ok AND n_x THEN job_id ELSE '' END
    FROM (SELECT cmd.*, cmd.as_of >= {cutoff} AND NOT cmd.updates AS ok FROM ({commands}) cmd) c
    ORDER BY key
    {hold}
    
