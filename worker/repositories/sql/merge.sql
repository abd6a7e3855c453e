
    WITH clock AS (SELECT {cutoff} AS cutoff),
    cmd AS (
        SELECT c.*, c.as_of < (SELECT cutoff FROM clock) AS refused FROM ({commands}) c
    ),
    locked AS (
        -- The person as the first statement locked it. A row that statement inserted (its token),
        -- or one with no stamp at all, is a person seen for the first time: blank, unless `erase`
        -- left their stamp, which then stands as a delete.
        SELECT c.*, s.inserted_by = CAST(:token AS uuid) AS fresh,
               s.inserted_by = CAST(:token AS uuid)
                 OR (u.id IS NULL AND s.provisioned_as_of = 0 AND s.role_as_of = 0 AND s.active_as_of = 0
                     AND s.password_as_of = 0 AND s.external_id_as_of = 0) AS blank,
               s.role AS s_role, s.is_active AS s_active, s.hashed_password AS s_hash,
               s.external_id AS s_external_id,
               s.pending_since AS s_pending, s.intent_reported AS s_reported,
               s.provisioned_as_of AS s_p_as_of, s.provisioned_job_id AS s_p_job_id,
               s.role_as_of AS s_r_as_of, s.role_job_id AS s_r_job_id,
               s.active_as_of AS s_a_as_of, s.active_job_id AS s_a_job_id,
               s.password_as_of AS s_h_as_of, s.password_job_id AS s_h_job_id,
               s.external_id_as_of AS s_x_as_of, s.external_id_job_id AS s_x_job_id,
               u.id AS old_id, u.email AS old_email, u.role AS u_role, u.is_active AS u_active,
               u.hashed_password AS row_hash, u.external_id AS u_external_id
        FROM cmd c
        -- Each person's rows through their unique index, whatever the statistics say: a subquery
        -- with LIMIT is not flattened into a join that a generic plan, made while the tables were
        -- small, would run by scanning them whole for every group.
        CROSS JOIN LATERAL (SELECT * FROM user_states x WHERE x.key = c.key LIMIT 1) s
        LEFT JOIN LATERAL (SELECT * FROM users x WHERE x.key = c.key LIMIT 1) u ON true
    ),
    cur AS {materialized}(
        SELECT l.*, l.old_id IS NOT NULL AS was_provisioned,
               -- each field as it stands: the users row's, else (no row) the state row's
               CASE WHEN l.blank THEN NULL ELSE coalesce(l.u_role, l.s_role) END AS old_role,
               CASE WHEN l.old_id IS NOT NULL THEN l.u_active WHEN l.blank THEN false
                    ELSE coalesce(l.s_active, false) END AS old_active,
               CASE WHEN l.old_id IS NOT NULL THEN l.row_hash WHEN l.blank THEN NULL
                    ELSE l.s_hash END AS old_hash,
               CASE WHEN l.old_id IS NOT NULL THEN l.u_external_id WHEN l.blank THEN NULL
                    ELSE l.s_external_id END AS old_external_id,
               CASE WHEN l.blank THEN NULL ELSE l.s_pending END AS old_pending,
               NOT l.blank AND l.s_reported AS old_reported, e.as_of IS NOT NULL AS unerased,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_p_as_of END AS p_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_p_job_id END AS p_job_id,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_r_as_of END AS r_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_r_job_id END AS r_job_id,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_a_as_of END AS a_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_a_job_id END AS a_job_id,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_h_as_of END AS h_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_h_job_id END AS h_job_id,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_x_as_of END AS x_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_x_job_id END AS x_job_id
        FROM locked l
        LEFT JOIN LATERAL (
            SELECT x.as_of, x.job_id COLLATE "C" AS job_id FROM erased_stamps x
            WHERE l.blank AND x.digest IN (l.digest, l.old_digest)
              AND EXISTS (SELECT FROM erased_stamps)  -- once per statement: mostly there are none
            ORDER BY x.as_of DESC, x.job_id DESC
            LIMIT 1
        ) e ON true
    ),
    decided AS {materialized}(
        -- w_<field>: the command names the field and is newer than the field's stamp; an update_user
        -- writes only a provisioned person (before the provision it waits, and its job tries again).
        SELECT c.*,
               NOT c.refused AND c.n_p AND (c.as_of, c.job_id) > (c.p_as_of, c.p_job_id) AS w_p,
               c.go AND c.n_r AND (c.as_of, c.job_id) > (c.r_as_of, c.r_job_id) AS w_r,
               c.go AND c.n_a AND (c.as_of, c.job_id) > (c.a_as_of, c.a_job_id) AS w_a,
               c.go AND c.n_h AND (c.as_of, c.job_id) > (c.h_as_of, c.h_job_id) AS w_h,
               c.go AND c.n_x AND (c.as_of, c.job_id) > (c.x_as_of, c.x_job_id) AS w_x,
               -- every field the command names holds a newer stamp already
               (NOT c.n_p OR (c.as_of, c.job_id) < (c.p_as_of, c.p_job_id))
                 AND (NOT c.n_r OR (c.as_of, c.job_id) < (c.r_as_of, c.r_job_id))
                 AND (NOT c.n_a OR (c.as_of, c.job_id) < (c.a_as_of, c.a_job_id))
                 AND (NOT c.n_h OR (c.as_of, c.job_id) < (c.h_as_of, c.h_job_id))
                 AND (NOT c.n_x OR (c.as_of, c.job_id) < (c.x_as_of, c.x_job_id))
                 AS all_newer,
               (c.as_of, c.job_id) = (c.r_as_of, c.r_job_id) AS holds_r
        FROM (SELECT cur.*, NOT cur.refused AND (NOT cur.updates OR cur.was_provisioned) AS go FROM cur) c
    ),
    merged AS {materialized}(
        SELECT d.*,
               CASE WHEN d.w_p THEN d.provision ELSE d.was_provisioned END AS new_provisioned,
               CASE WHEN d.w_p AND d.provision THEN d.email ELSE d.old_email END AS new_email,
               CASE WHEN d.w_r THEN d.role ELSE d.old_role END AS new_role,
               CASE WHEN NOT d.w_a THEN d.old_active WHEN d.updates THEN d.active ELSE d.provision END
                 AS new_active,
               CASE WHEN d.w_h THEN d.hash ELSE d.old_hash END AS new_hash,
               CASE WHEN d.w_x THEN d.external_id ELSE d.old_external_id END AS new_external_id
        FROM decided d
    ),
    n AS (
        SELECT m.*,
               m.w_p OR m.w_r OR m.w_a OR m.w_h OR m.w_x AS wins,
               CASE WHEN m.new_provisioned THEN NULL
                    WHEN m.w_r AND m.function = 'set_user_role' THEN now()
                    WHEN m.w_r THEN NULL
                    ELSE m.old_pending END AS new_pending,
               CASE
                   WHEN m.refused THEN 'refused'
                   WHEN m.new_provisioned AND NOT m.was_provisioned THEN 'created'
                   WHEN m.was_provisioned AND NOT m.new_provisioned THEN 'deleted'
                   WHEN NOT m.new_provisioned THEN
                       CASE m.function WHEN 'deactivate_user' THEN 'absent'
                                       WHEN 'delete_user' THEN 'absent'
                                       WHEN 'set_user_role' THEN
                                           CASE WHEN m.w_r OR m.holds_r THEN 'pending' ELSE 'superseded' END
                                       WHEN 'update_user' THEN
                                           -- newer than the last provision or delete: its user may come
                                           CASE WHEN (m.as_of, m.job_id) > (m.p_as_of, m.p_job_id)
                                                THEN 'waiting' ELSE 'superseded' END
                                       ELSE 'superseded' END
                   WHEN m.new_email <> m.old_email OR m.new_role IS DISTINCT FROM m.old_role
                        OR m.new_active <> m.old_active OR m.new_hash IS DISTINCT FROM m.old_hash
                        OR m.new_external_id IS DISTINCT FROM m.old_external_id
                       THEN 'updated'
                   WHEN m.all_newer THEN 'superseded'
                   ELSE 'unchanged'
               END AS status
        FROM merged m
    ),
    state AS (
        -- A state row written again (rare for a new person: an erased stamp, or a refusal by this
        -- statement's later clock). An upsert on rows statement 1 locked, so that each row is found
        -- through the primary key: an UPDATE … FROM may hash-join the whole table under a generic
        -- plan made while the table was small.
        INSERT INTO user_states AS s (key, key_version, role, is_active, hashed_password, external_id,
                                      provisioned_as_of, provisioned_job_id, role_as_of, role_job_id,
                                      active_as_of, active_job_id, password_as_of, password_job_id,
                                      external_id_as_of, external_id_job_id, pending_since, intent_reported)
        SELECT n.key, CAST(:key_version AS smallint),
               CASE WHEN n.new_provisioned THEN NULL ELSE n.new_role END,
               CASE WHEN n.new_provisioned THEN NULL ELSE n.new_active END,
               CASE WHEN n.new_provisioned THEN NULL ELSE n.new_hash END,
               CASE WHEN n.new_provisioned THEN NULL ELSE n.new_external_id END,
               CASE WHEN n.w_p THEN n.as_of ELSE n.p_as_of END,
               CASE WHEN n.w_p THEN n.job_id ELSE n.p_job_id END,
               CASE WHEN n.w_r THEN n.as_of ELSE n.r_as_of END,
               CASE WHEN n.w_r THEN n.job_id ELSE n.r_job_id END,
               CASE WHEN n.w_a THEN n.as_of ELSE n.a_as_of END,
               CASE WHEN n.w_a THEN n.job_id ELSE n.a_job_id END,
               CASE WHEN n.w_h THEN n.as_of ELSE n.h_as_of END,
               CASE WHEN n.w_h THEN n.job_id ELSE n.h_job_id END,
               CASE WHEN n.w_x THEN n.as_of ELSE n.x_as_of END,
               CASE WHEN n.w_x THEN n.job_id ELSE n.x_job_id END,
               n.new_pending,
               n.new_pending IS NOT NULL AND n.new_pending = n.old_pending AND n.old_reported
        FROM n
        WHERE CASE WHEN n.fresh THEN n.refused OR n.unerased ELSE n.wins OR n.unerased END
        ON CONFLICT (key) DO UPDATE
        SET role = EXCLUDED.role, is_active = EXCLUDED.is_active, hashed_password = EXCLUDED.hashed_password,
            external_id = EXCLUDED.external_id,
            provisioned_as_of = EXCLUDED.provisioned_as_of, provisioned_job_id = EXCLUDED.provisioned_job_id,
            role_as_of = EXCLUDED.role_as_of, role_job_id = EXCLUDED.role_job_id,
            active_as_of = EXCLUDED.active_as_of, active_job_id = EXCLUDED.active_job_id,
            password_as_of = EXCLUDED.password_as_of, password_job_id = EXCLUDED.password_job_id,
            external_id_as_of = EXCLUDED.external_id_as_of, external_id_job_id = EXCLUDED.external_id_job_id,
            pending_since = EXCLUDED.pending_since, intent_reported = EXCLUDED.intent_reported,
            updated_at = now()
    ),
    created AS (
        INSERT INTO users (key, email, role, is_active, hashed_password, external_id)
        SELECT key, new_email, new_role, new_active, new_hash, new_external_id
        FROM n
        WHERE status = 'created'
        ORDER BY key
        RETURNING id, key
    ),
    changed AS (
        UPDATE users u
        SET email = n.new_email, role = n.new_role, is_active = n.new_active, hashed_password = n.new_hash,
            external_id = n.new_external_id, updated_at = now()
        FROM n
        WHERE u.key = n.key AND n.status = 'updated'
    ),
    removed AS (
        DELETE FROM users u USING n WHERE u.key = n.key AND n.status = 'deleted'
    ),
    outcome AS (
        SELECT n.*, coalesce(n.old_id, created.id) AS id
        FROM n LEFT JOIN created USING (key)
    ),
    audit AS (
        INSERT INTO user_changes (email_key, job_id, email, user_id, function, as_of, status, was_email,
                                  was_provisioned, provisioned, was_role, role, was_active, is_active,
                                  password_changed)
        SELECT o.key, o.job_id, CASE WHEN o.new_provisioned THEN o.new_email ELSE o.email END,
               CASE WHEN o.new_provisioned OR o.was_provisioned THEN o.id END,
               o.function, o.as_of, o.status, o.old_email, o.was_provisioned, o.new_provisioned,
               CASE WHEN o.was_provisioned THEN o.old_role END,
               CASE WHEN o.new_provisioned THEN o.new_role END,
               CASE WHEN o.was_provisioned THEN o.old_active END,
               CASE WHEN o.new_provisioned THEN o.new_active END,
               -- the users row's hash before and after (a state row's kept hash is no password change)
               CASE WHEN o.new_provisioned THEN o.new_hash END IS DISTINCT FROM o.row_hash
        FROM outcome o
        -- An update_user that waits for its user is tried again under its job id, and one that
        -- changed nothing (an identity provider re-sending full state) is no event.
        WHERE NOT o.refused AND NOT (o.updates AND o.status IN ('waiting', 'unchanged'))
        ON CONFLICT DO NOTHING
    )

