"""The SCIM tier: real `python -m worker scim` and worker processes (tests.support.scim)."""

from tests.support.scim import scim_stack as scim_stack
