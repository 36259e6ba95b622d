"""`hotwash db upgrade | downgrade | current`, and how other commands open the audit store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from bot.audit import schema
from bot.audit.store import AuditStore, build_store
from bot.cli.context import err, out, settings_from
from bot.settings import Settings, masked

db_app = typer.Typer(help="Migrate and inspect the audit database.", no_args_is_help=True)


@contextmanager
def store_from(ctx: typer.Context) -> Iterator[AuditStore]:
    """The audit store for this invocation, closed afterwards. An out-of-date schema prints
    the one-line reason (which says to run `hotwash db upgrade`) and exits 1."""
    settings = settings_from(ctx)
    try:
        store = build_store(settings)
    except schema.SchemaOutOfDate as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    try:
        yield store
    finally:
        store.close()


def _where(settings: Settings) -> str:
    return str(masked(settings)["effective_database_url"])


def _migrate(settings: Settings, step: Callable[..., None], revision: str) -> None:
    """Run one Alembic direction and print the revision before and after."""
    engine = schema.make_engine(settings.effective_database_url)
    try:
        before = schema.current_revision(engine)
        step(engine, revision=revision)
        after = schema.current_revision(engine)
    finally:
        engine.dispose()
    out.print(f"database {_where(settings)}: {before or 'empty'} -> {after or 'empty'}",
              highlight=False, soft_wrap=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context,
            revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Migrate the audit database to the newest schema (safe to repeat)."""
    _migrate(settings_from(ctx), schema.upgrade, revision)


@db_app.command("downgrade")
def downgrade(ctx: typer.Context,
              revision: str = typer.Argument("-1", help="Target revision, e.g. -1 or base."),
              yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")
              ) -> None:
    """Migrate the audit database down (dropping tables loses the audit log)."""
    settings = settings_from(ctx)
    if not yes:
        typer.confirm(f"Downgrade {_where(settings)} to {revision}? Data in dropped tables "
                      "is lost", abort=True)
    _migrate(settings, schema.downgrade, revision)


@db_app.command("current")
def current(ctx: typer.Context) -> None:
    """Show the schema revision; exit 1 when it is not the newest."""
    settings = settings_from(ctx)
    engine = schema.make_engine(settings.effective_database_url)
    try:
        now = schema.current_revision(engine)
    finally:
        engine.dispose()
    head = schema.head_revision()
    state = "up to date" if now == head else "OUT OF DATE: run `hotwash db upgrade`"
    out.print(f"database {_where(settings)}: at {now or 'empty'}, newest {head} ({state})",
              highlight=False, soft_wrap=True)
    if now != head:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `db` to the root app."""
    app.add_typer(db_app, name="db")
