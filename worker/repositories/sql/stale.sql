
    greatest(s.provisioned_as_of, s.role_as_of, s.active_as_of, s.password_as_of, s.external_id_as_of)
      < {cutoff}
    AND (s.pending_since IS NULL OR s.intent_reported)
    AND NOT EXISTS (SELECT FROM users u WHERE u.key = s.key)

