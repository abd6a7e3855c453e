"""Passwords: the argon2id policy and the hashing pool (sealing for transport is `worker.jobs.sealing`)."""
