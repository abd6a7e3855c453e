"""Passwords: the argon2id policy, the hashing pool, and sealing for transport through Redis."""
