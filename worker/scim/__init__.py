"""The SCIM 2.0 service provider (RFC 7643, RFC 7644): identity providers' front door to the queue.

Writes go through `worker.client.ProvisioningClient` as stamped jobs; reads come from PostgreSQL.
`worker.scim.app.create_app` builds the Starlette application that `python -m worker scim` serves.
"""

BASE_PATH = "/scim/v2"
"""Where the service answers: every SCIM endpoint is under it."""
