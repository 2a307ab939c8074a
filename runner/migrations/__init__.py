"""Alembic migrations of the result database (``vitstudy db upgrade``).

Revision ``"0001"`` is schema version 1, ``"0002"`` version 2, and so on; ``runner.db``
holds the newest (``SCHEMA_VERSION``). To change the schema: edit the tables in
``runner/db.py``, bump ``SCHEMA_VERSION``, and add ``versions/<NNNN>_<what>.py`` whose
``upgrade()`` makes the change and ends with ``set_version(NNNN)``. The tests check that the
migrations from an empty database give exactly the tables of ``runner/db.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect

from runner import db
from runner.errors import DatabaseUnusable

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent


def alembic_config(conn: Connection) -> Config:
    """An Alembic configuration that migrates over ``conn`` (no ``alembic.ini`` needed)."""
    try:
        from alembic.config import Config
    except ModuleNotFoundError:
        raise DatabaseUnusable(
            "upgrading a database needs Alembic: pip install alembic (or 'vitstudy[postgres]')"
        ) from None
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = conn
    return config


def run_migrations(conn: Connection, target: str) -> None:
    """Apply the migrations up to revision ``target`` inside ``conn``'s transaction."""
    from alembic import command

    command.upgrade(alembic_config(conn), target)


def head_revision() -> str:
    """The newest revision among the migration scripts."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(HERE))
    return ScriptDirectory.from_config(config).get_current_head()


def upgrade(engine: Engine) -> tuple[int | None, int]:
    """Bring the database's schema up to ``db.SCHEMA_VERSION`` with the migrations, in one
    transaction; returns (version before, version after). Refuses a newer schema."""
    with db.write(engine) as conn:
        db.lock_schema(conn)
        before = db.schema_version(conn)
        if before is not None and before > db.SCHEMA_VERSION:
            db.check_schema_version(before)  # raises: a newer schema is never touched
        if before is not None and not inspect(conn).has_table("alembic_version"):
            db.alembic_version.create(conn)  # made before Alembic: record where it stands
            db.stamp(conn, before)
        if before != db.SCHEMA_VERSION:
            run_migrations(conn, db.revision_id(db.SCHEMA_VERSION))
    return before, db.SCHEMA_VERSION
