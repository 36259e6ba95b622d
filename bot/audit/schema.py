"""Schema migrations (Alembic, configured in code) and the out-of-date schema guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from bot import data_dir

MIGRATIONS_DIR = data_dir("migrations")


class SchemaOutOfDate(RuntimeError):
    """The database schema does not match this code; the message says what to run."""


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite files get their folder created, foreign keys on, WAL,
    and a generous busy timeout so concurrent writers wait instead of failing."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # Under WAL, NORMAL stays consistent and survives a process crash; only a power
        # loss can drop the last commits. It saves an fsync per commit on the embedded
        # default; production runs on PostgreSQL.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def alembic_config(engine: Engine) -> Config:
    """Alembic config built in code: no alembic.ini at the top of the repo."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False)
                           .replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str | None:
    """The newest migration this code ships."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, *, revision: str = "head") -> None:
    """Migrate the database up to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, *, revision: str = "-1") -> None:
    """Migrate the database down to ``revision`` ("base" drops everything)."""
    command.downgrade(alembic_config(engine), revision)


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Refuse to run on an out-of-date schema, or migrate it when allowed."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaOutOfDate(
            f"database schema is at {current}, which this code does not know (newer "
            f"Hotwash?); this code needs {head}: upgrade Hotwash or use another database"
        )
    if auto_migrate:
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"database schema is at {current or 'an empty database'}, this code needs {head}: "
        "run `hotwash db upgrade`"
    )
