"""create user table

Reviewed after autogenerate: role is VARCHAR + CHECK (not a native enum, so adding a role later is a
plain constraint swap), and email is unique on lower(email), which is also the ON CONFLICT target.

Revision ID: dc33d2768860
Revises:
Create Date: 2026-11-26 04:41:34.761140

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dc33d2768860"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("hashed_password", sa.String(length=512), nullable=True),
        sa.Column(
            "role",
            sa.Enum(
                "admin", "member", "viewer", name="role", native_enum=False, create_constraint=True, length=16
            ),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index("uq_users_email_lower", "users", [sa.literal_column("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_table("users")
