"""Asynchronous user-provisioning worker: ARQ jobs applied to PostgreSQL."""
