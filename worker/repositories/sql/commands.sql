
    SELECT c.key COLLATE "C" AS key, c.email, c.function, c.role, c.hash, c.active, c.external_id, c.as_of,
           c.job_id COLLATE "C" AS job_id, c.digest, c.old_digest, c.position,
           c.function IN ('provision_user', 'provision_users') AS provision,
           c.function = 'update_user' AS updates,
           -- n_<field>: the command names the field (provisioned, role, active, hash, external id);
           -- update_user names exactly the fields it carries
           c.function IN ('provision_user', 'provision_users', 'delete_user') AS n_p,
           CASE WHEN c.function = 'update_user' THEN c.role IS NOT NULL
                ELSE c.function <> 'deactivate_user' END AS n_r,
           CASE WHEN c.function = 'update_user' THEN c.active IS NOT NULL
                ELSE c.function <> 'set_user_role' END AS n_a,
           c.function = 'delete_user' OR c.hash IS NOT NULL AS n_h,
           c.function = 'delete_user' OR c.external_id IS NOT NULL AS n_x
    FROM unnest(CAST(:keys AS text[]), CAST(:emails AS varchar[]), CAST(:functions AS varchar[]),
                CAST(:roles AS varchar[]), CAST(:hashes AS varchar[]), CAST(:actives AS boolean[]),
                CAST(:external_ids AS varchar[]), CAST(:as_ofs AS bigint[]), CAST(:job_ids AS text[]),
                CAST(:digests AS bytea[]), CAST(:old_digests AS bytea[]))
         WITH ORDINALITY
         AS c(key, email, function, role, hash, active, external_id, as_of, job_id, digest, old_digest,
              position)

