"""Public password API: hash a password the way the worker does, and verify one against a stored hash.

`from worker.security import hash_password, verify_password` is the import path the README gives
applications; the policy itself lives in `worker.passwords.policy`.
"""

from worker.passwords.policy import PasswordPolicy, Verification, hash_password, verify_password

__all__ = ["PasswordPolicy", "Verification", "hash_password", "verify_password"]
