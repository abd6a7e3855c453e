"""Where the Alembic history lives, and whether a database is at its head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
ALEMBIC_DIR = PROJECT_ROOT / "alembic"

# pg_advisory_xact_lock key taken by env.py while migrating ("provisioning" → a fixed bigint).
MIGRATION_LOCK_KEY = 0x70726F76_69736E


def alembic_config(url: str | None = None) -> Config:
    """An Alembic `Config` for this project; `url` overrides `DATABASE_URL` for env.py."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["configure_logger"] = False  # leave the caller's logging alone
    if url is not None:
        config.attributes["url"] = url
    return config


def head_revisions() -> frozenset[str]:
    """The revisions this code expects the database to be at."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def _current_revisions(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


@dataclass(frozen=True)
class SchemaState:
    """The database's revisions compared with the code's heads."""

    current: frozenset[str]
    expected: frozenset[str]

    @property
    def at_head(self) -> bool:
        """True when the database is exactly at the code's head revisions."""
        return self.current == self.expected

    def describe(self) -> str:
        """One line naming the mismatch and the fix."""
        current = ", ".join(sorted(self.current)) or "None"
        expected = ", ".join(sorted(self.expected)) or "None"
        if self.at_head:
            return f"database at revision {current}, as the code expects"
        if not self.current <= _known_revisions():
            return (
                f"database at revision {current}, which this code does not know (it expects {expected}): "
                "the schema is newer than this worker; deploy the matching code"
            )
        return f"database at revision {current}, code expects {expected}: run `make db-migrate`"


async def schema_state(engine: AsyncEngine) -> SchemaState:
    """Read the database's Alembic revision and compare it with the code's heads."""
    async with engine.connect() as connection:
        current = await connection.run_sync(_current_revisions)
    return SchemaState(current=current, expected=head_revisions())
