ON CONFLICT (key) DO UPDATE SET key_version = EXCLUDED.key_version WHERE false
