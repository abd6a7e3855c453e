"""external ids: users.external_id (SCIM's externalId), stamped like every other field; the
fields a person's state row keeps while it has no users row

`users.external_id` is the identifier a system of record (an identity provider) gives the person;
nullable, indexed for lookups by it. Its stamp lives in `user_states` beside the others, so that
commands that set it converge on the newest one's value.

`user_states` also keeps `is_active`, `hashed_password` and `external_id` while the person has no
`users` row, as it kept `role`: an `update_user` newer than a delete that runs before it must not
lose its values with the row the delete removes (a later provision brings them back). Adding
nullable columns and columns with constant defaults rewrites no table; the index is built under a
brief write lock.

Revision ID: b8e2f4a6c913
Revises: 7c3f9a1d2b64
Create Date: 2026-12-06 13:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b8e2f4a6c913"
down_revision: str | None = "7c3f9a1d2b64"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("external_id", sa.String(length=255), nullable=True))
    op.create_index(op.f("ix_users_external_id"), "users", ["external_id"])
    op.add_column(
        "user_states",
        sa.Column("external_id_as_of", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "user_states",
        sa.Column("external_id_job_id", sa.Text(collation="C"), server_default=sa.text("''"), nullable=False),
    )
    op.add_column("user_states", sa.Column("is_active", sa.Boolean(), nullable=True))
    op.add_column("user_states", sa.Column("hashed_password", sa.String(length=512), nullable=True))
    op.add_column("user_states", sa.Column("external_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("user_states", "external_id")
    op.drop_column("user_states", "hashed_password")
    op.drop_column("user_states", "is_active")
    op.drop_column("user_states", "external_id_job_id")
    op.drop_column("user_states", "external_id_as_of")
    op.drop_index(op.f("ix_users_external_id"), table_name="users")
    op.drop_column("users", "external_id")
