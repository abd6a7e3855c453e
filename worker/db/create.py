"""`python -m worker.db.create`: create the database named in DATABASE_URL if it does not exist."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from worker.settings import get_settings, mask_url


async def ensure_database(url: str, *, maintenance_db: str = "postgres") -> bool:
    """Create the database `url` names unless it exists; True if it was created."""
    target = make_url(url)
    name = target.database
    if not name:
        raise ValueError(f"{mask_url(url)} names no database")
    admin = create_async_engine(
        target.set(database=maintenance_db), isolation_level="AUTOCOMMIT", hide_parameters=True
    )
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote_identifier(name)
            await conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        await admin.dispose()


def main() -> int:
    """Create the configured database if missing; print what happened."""
    url = get_settings().database_url.get_secret_value()
    try:
        created = asyncio.run(ensure_database(url))
    except (OSError, SQLAlchemyError) as error:
        print(
            f"cannot create the database at {mask_url(url)} ({type(error).__name__}): "
            "is PostgreSQL running, and may this user CREATE DATABASE?",
            file=sys.stderr,
        )
        return 1
    print(f"{'created' if created else 'found'} database {mask_url(url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
