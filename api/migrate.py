"""Apply the schema migrations in `api/migrations` (peewee-migrate)."""

import logging
from pathlib import Path

from peewee_migrate import Router

from api.store import db

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def upgrade() -> list[str]:
    """Apply every pending migration; return the names applied."""
    router = Router(db.obj, migrate_dir=MIGRATIONS_DIR, logger=logging.getLogger("quiver.migrate"))
    pending = list(router.diff)
    router.run()
    return pending
