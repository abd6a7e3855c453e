"""identity keys, and users that hold only users (stamps move to user_states)

Every person gets an identity key (worker.jobs.identity, version 1), computed here in Python for
the existing rows, in batches, since PostgreSQL's lower() must no longer decide identity. Two
existing rows whose emails have one key fail the upgrade with the emails listed: they are one
person's two accounts (or two people in one row), and only an operator can say which; nothing is
merged silently. Stamps, tombstones and intents move to `user_states` (one row per key, which is
also every command's lock); `users` keeps the seed's columns plus `key`. The audit trail is
re-keyed by identity key. `erased_stamps` keeps what `erase` leaves.

Revision ID: 7c3f9a1d2b64
Revises: 5a1e7c0d9b42
Create Date: 2026-12-03 19:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.jobs.identity import KEY_VERSION, KeyRefused, identity_key

revision: str = "7c3f9a1d2b64"
down_revision: str | None = "5a1e7c0d9b42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000
STAMPED_FIELDS = ("provisioned", "role", "active", "password")
ROLE = sa.Enum("admin", "member", "viewer", name="role", native_enum=False, create_constraint=True, length=16)


class IdentityCollision(RuntimeError):
    """Existing rows that the identity key makes one person: the upgrade stops, nothing is merged."""


def _fill_keys(table: str, ids: dict[str, str], target: str) -> list[str]:
    """Set `target` to the identity key of `email`, BATCH rows at a time in `ids` order; the emails with none.

    `ids` names the columns that identify a row (never `target`) and their SQL types.
    """
    connection = op.get_bind()
    refused: list[str] = []
    order = ", ".join(ids)
    last: dict[str, object] | None = None
    while True:
        after = "" if last is None else f"WHERE ({order}) > ({', '.join(':' + column for column in ids)})"
        rows = connection.execute(
            sa.text(f"SELECT {order}, email FROM {table} {after} ORDER BY {order} LIMIT {BATCH}"),  # noqa: S608
            last or {},
        ).all()
        if not rows:
            return refused
        keys = []
        for row in rows:
            try:
                keys.append(identity_key(row.email))
            except KeyRefused as why:
                refused.append(f"{row.email} ({why})")
                keys.append("!" + row.email.lower())  # kept apart: no accepted email has this key
        arrays = ", ".join(f"CAST(:{column}s AS {kind}[])" for column, kind in ids.items())
        match = " AND ".join(f"t.{column} = m.{column}" for column in ids)
        connection.execute(
            sa.text(
                f"UPDATE {table} t SET {target} = m.key "  # noqa: S608 - constants
                f"FROM unnest({arrays}, CAST(:keys AS text[])) AS m({order}, key) WHERE {match}"
            ),
            {**{f"{column}s": [getattr(row, column) for row in rows] for column in ids}, "keys": keys},
        )
        last = {column: getattr(rows[-1], column) for column in ids}


def _rekey_audit(column: str) -> None:
    """Make `column` the audit trail's key, keeping one row per (key, job id)."""
    op.execute(
        f"DELETE FROM user_changes a USING user_changes b "  # noqa: S608 - constants
        f"WHERE a.{column} = b.{column} AND a.job_id = b.job_id AND a.ctid > b.ctid"
    )
    op.drop_constraint("pk_user_changes", "user_changes", type_="primary")
    op.drop_column("user_changes", "email_key")
    op.alter_column("user_changes", column, new_column_name="email_key", nullable=False)
    op.create_primary_key("pk_user_changes", "user_changes", ["email_key", "job_id"])


def upgrade() -> None:
    connection = op.get_bind()
    op.create_table(
        "user_states",
        sa.Column("key", sa.Text(collation="C"), nullable=False),
        sa.Column("key_version", sa.SmallInteger(), nullable=False),
        sa.Column("inserted_by", sa.Uuid(), nullable=True),
        sa.Column("role", ROLE, nullable=True),
        *[
            column
            for field in STAMPED_FIELDS
            for column in (
                sa.Column(f"{field}_as_of", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
                sa.Column(
                    f"{field}_job_id", sa.Text(collation="C"), server_default=sa.text("''"), nullable=False
                ),
            )
        ],
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("intent_reported", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_user_states")),
    )
    op.create_index(
        "ix_user_states_pending_since",
        "user_states",
        ["pending_since"],
        postgresql_where=sa.text("pending_since IS NOT NULL AND NOT intent_reported"),
    )
    op.create_table(
        "erased_stamps",
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.Text(collation="C"), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_erased_stamps")),
    )

    # Keys for every existing row, then the rows that would become one person.
    op.add_column("users", sa.Column("key", sa.Text(collation="C"), nullable=True))
    refused = _fill_keys("users", {"id": "bigint"}, "key")
    if refused:
        raise IdentityCollision(
            f"{len(refused)} existing email(s) have no identity key (version {KEY_VERSION}): "
            f"{', '.join(sorted(refused)[:50])}. Change or delete these users, then run `make db-migrate` again"
        )
    collisions = connection.execute(
        sa.text(
            "SELECT key, array_agg(email ORDER BY id) FROM users GROUP BY key HAVING count(*) > 1 ORDER BY key"
        )
    ).all()
    if collisions:
        listed = "; ".join(" = ".join(emails) for _, emails in collisions[:50])
        raise IdentityCollision(
            f"{len(collisions)} group(s) of existing rows are one person by identity key version "
            f"{KEY_VERSION} (README, 'Identity'): {listed}. Nothing was changed: delete or rename all but one "
            "row of each group (or erase the tombstones), then run `make db-migrate` again"
        )

    connection.execute(
        sa.text(
            f"""
            INSERT INTO user_states (key, key_version, role, provisioned_as_of, provisioned_job_id,
                                     role_as_of, role_job_id, active_as_of, active_job_id,
                                     password_as_of, password_job_id, pending_since, updated_at)
            SELECT key, {KEY_VERSION}, CASE WHEN provisioned THEN NULL ELSE role END,
                   provisioned_as_of, provisioned_job_id, role_as_of, role_job_id,
                   active_as_of, active_job_id, password_as_of, password_job_id,
                   CASE WHEN provisioned THEN NULL ELSE pending_since END, updated_at
            FROM users
            """  # noqa: S608 - a constant
        )
    )
    connection.execute(sa.text("DELETE FROM users WHERE NOT provisioned"))
    op.drop_index(
        "ix_users_pending_since", table_name="users", postgresql_where=sa.text("pending_since IS NOT NULL")
    )
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_column("users", "pending_since")
    for field in reversed(STAMPED_FIELDS):
        op.drop_column("users", f"{field}_job_id")
        op.drop_column("users", f"{field}_as_of")
    op.drop_column("users", "provisioned")
    op.alter_column("users", "role", existing_type=sa.String(length=16), nullable=False)
    op.alter_column("users", "key", existing_type=sa.Text(collation="C"), nullable=False)
    op.create_unique_constraint(op.f("uq_users_key"), "users", ["key"])
    op.create_foreign_key(op.f("fk_users_key_user_states"), "users", "user_states", ["key"], ["key"])

    # The audit trail, re-keyed: its key was lower(email). A new column, so that the batches can
    # page by the old key; one job's rows that become one person's keep one row.
    op.add_column("user_changes", sa.Column("identity_key", sa.Text(collation="C"), nullable=True))
    _fill_keys("user_changes", {"email_key": "varchar", "job_id": "text"}, "identity_key")
    _rekey_audit("identity_key")


def downgrade() -> None:
    connection = op.get_bind()
    op.drop_constraint(op.f("fk_users_key_user_states"), "users", type_="foreignkey")
    op.drop_constraint(op.f("uq_users_key"), "users", type_="unique")
    op.alter_column("users", "role", existing_type=sa.String(length=16), nullable=True)
    op.add_column(
        "users", sa.Column("provisioned", sa.Boolean(), server_default=sa.text("true"), nullable=False)
    )
    for field in STAMPED_FIELDS:
        op.add_column(
            "users", sa.Column(f"{field}_as_of", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
        op.add_column(
            "users",
            sa.Column(
                f"{field}_job_id", sa.Text(collation="C"), server_default=sa.text("''"), nullable=False
            ),
        )
    op.add_column("users", sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True))
    stamps = ", ".join(
        f"{field}_as_of = s.{field}_as_of, {field}_job_id = s.{field}_job_id" for field in STAMPED_FIELDS
    )
    connection.execute(sa.text(f"UPDATE users u SET {stamps} FROM user_states s WHERE s.key = u.key"))  # noqa: S608
    # People with no user (tombstones, intents) become the old schema's rows that are no user; the
    # key stands for the email, which these rows never kept.
    columns = ", ".join(f"{field}_as_of, {field}_job_id" for field in STAMPED_FIELDS)
    connection.execute(
        sa.text(
            f"""
            INSERT INTO users (key, email, role, is_active, provisioned, pending_since, {columns})
            SELECT s.key, left(s.key, 320), s.role, false, false, s.pending_since, {columns}
            FROM user_states s
            WHERE NOT EXISTS (SELECT FROM users u WHERE u.key = s.key)
            """  # noqa: S608 - constants
        )
    )
    # People the key keeps apart but lower() makes one (`İvan` and `ivan`, a final sigma): the old
    # unique index cannot hold both, and only an operator can say which goes.
    collisions = connection.execute(
        sa.text(
            "SELECT array_agg(email ORDER BY id) FROM users GROUP BY lower(email) HAVING count(*) > 1 "
            "ORDER BY lower(email)"
        )
    ).all()
    if collisions:
        listed = "; ".join(" = ".join(emails) for (emails,) in collisions[:50])
        raise IdentityCollision(
            f"{len(collisions)} group(s) of people are one row under lower(email), the identity of revision "
            f"{down_revision}: {listed}. Nothing was changed: delete or rename all but one of each group "
            "(or erase the tombstones), then downgrade again"
        )
    op.create_index(
        "ix_users_pending_since",
        "users",
        ["pending_since"],
        unique=False,
        postgresql_where=sa.text("pending_since IS NOT NULL"),
    )
    op.create_index("uq_users_email_lower", "users", [sa.literal_column("lower(email)")], unique=True)
    op.drop_column("users", "key")
    op.add_column("user_changes", sa.Column("lower_key", sa.String(length=320), nullable=True))
    connection.execute(sa.text("UPDATE user_changes SET lower_key = lower(email)"))
    _rekey_audit("lower_key")
    op.drop_table("erased_stamps")
    op.drop_index(
        "ix_user_states_pending_since",
        table_name="user_states",
        postgresql_where=sa.text("pending_since IS NOT NULL AND NOT intent_reported"),
    )
    op.drop_table("user_states")
