
    WITH doomed AS (
        DELETE FROM user_states s
        WHERE s.key = CAST(:key AS text) AND NOT EXISTS (SELECT FROM users u WHERE u.key = s.key)
        RETURNING s.*
    ),
    stamps AS (
        SELECT as_of, job_id COLLATE "C" AS job_id FROM doomed, LATERAL (VALUES
            (provisioned_as_of, provisioned_job_id), (role_as_of, role_job_id),
            (active_as_of, active_job_id), (password_as_of, password_job_id),
            (external_id_as_of, external_id_job_id)) AS f(as_of, job_id)
        UNION ALL
        SELECT as_of, job_id FROM erased_stamps
        WHERE digest IN (CAST(:digest AS bytea), CAST(:old_digest AS bytea))
    ),
    newest AS (
        SELECT as_of, job_id FROM stamps WHERE as_of > 0 ORDER BY as_of DESC, job_id DESC LIMIT 1
    ),
    previous AS (
        DELETE FROM erased_stamps WHERE digest = CAST(:old_digest AS bytea)
    ),
    kept AS (
        INSERT INTO erased_stamps (digest, as_of, job_id)
        SELECT CAST(:digest AS bytea), as_of, job_id FROM newest
        ON CONFLICT (digest) DO UPDATE SET as_of = EXCLUDED.as_of, job_id = EXCLUDED.job_id, erased_at = now()
    )
    SELECT count(*) FROM doomed
    WHERE greatest(provisioned_as_of, role_as_of, active_as_of, password_as_of, external_id_as_of) > 0
    
