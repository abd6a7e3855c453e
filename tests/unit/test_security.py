"""`from worker.security import hash_password, verify_password`: the import path the README gives."""

from __future__ import annotations

from worker.jobs.payloads import ProvisionUser
from worker.security import hash_password, verify_password


def test_a_hash_from_the_public_api_verifies_and_is_accepted_as_a_jobs_password_hash() -> None:
    hashed = hash_password("correct horse battery staple")
    assert verify_password(hashed, "correct horse battery staple").valid
    assert not verify_password(hashed, "wrong horse").valid
    job = ProvisionUser(email="app@example.com", role="member", password_hash=hashed)
    assert job.password_hash == hashed
