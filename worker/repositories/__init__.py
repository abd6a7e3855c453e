"""Data access: queries on the session they are given, never a commit."""
