"""Provisioning logic; each service call is one unit of work."""
