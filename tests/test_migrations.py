"""Migrations up and down on SQLite and PostgreSQL, and the out-of-date schema guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot.audit import schema
from bot.audit.models import Base
from bot.audit.store import build_store
from bot.settings import load_settings

AUDIT_TABLES = {"received", "alerts", "incidents", "drafts", "decisions", "evidence_blobs",
                "events", "chain_head", "hotwash_job_runs", "apscheduler_jobs"}


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = schema.make_engine(db_url)
    try:
        assert schema.current_revision(engine) is None
        schema.upgrade(engine)
        assert schema.current_revision(engine) == schema.head_revision()
        assert AUDIT_TABLES <= set(inspect(engine).get_table_names())
        # The migration creates exactly what the models describe.
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        schema.downgrade(engine, revision="base")
        assert schema.current_revision(engine) is None
        assert not AUDIT_TABLES & set(inspect(engine).get_table_names())
        schema.upgrade(engine)
        assert schema.current_revision(engine) == schema.head_revision()
    finally:
        engine.dispose()


def test_migrated_database_starts_an_empty_valid_chain(db_url: str) -> None:
    engine = schema.make_engine(db_url)
    schema.upgrade(engine)
    engine.dispose()
    store = build_store(load_settings(database_url=db_url, auto_migrate=False))
    try:
        report = store.verify()
        assert report.ok and report.events == 0
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_is_never_migrated_implicitly(pg_url: str) -> None:
    settings = load_settings(database_url=pg_url, auto_migrate=True)
    with pytest.raises(schema.SchemaOutOfDate, match=r"run `hotwash db upgrade`"):
        build_store(settings)


def test_embedded_sqlite_migrates_itself_by_default(tmp_path: Path) -> None:
    store = build_store(load_settings(data_dir=tmp_path / "data"))
    try:
        assert (tmp_path / "data" / "hotwash.db").exists()
        assert schema.current_revision(store.engine) == schema.head_revision()
    finally:
        store.close()


def test_out_of_date_sqlite_is_refused_without_auto_migrate(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, auto_migrate=False)
    with pytest.raises(schema.SchemaOutOfDate) as caught:
        build_store(settings)
    assert "empty database" in str(caught.value)
    assert "run `hotwash db upgrade`" in str(caught.value)


def test_schema_newer_than_the_code_is_refused_not_migrated(tmp_path: Path) -> None:
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'hotwash.db'}"
    engine = schema.make_engine(url)
    schema.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(schema.SchemaOutOfDate, match="9999, which this code does not know"):
        build_store(load_settings(data_dir=tmp_path))


def test_every_command_refuses_an_out_of_date_schema_in_one_line(tmp_path: Path,
                                                                 repo_root: Path) -> None:
    """Commands that wire all services (triage, serve) go through the same guard."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTWASH_")}
    env |= {"HOTWASH_DATA_DIR": str(tmp_path / "data"), "HOTWASH_AUTO_MIGRATE": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "triage", "--alert",
         str(repo_root / "samples" / "alerts" / "checkout-5xx.json")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "run `hotwash db upgrade`" in done.stderr


def test_scheduler_tables_made_by_an_older_bot_are_adopted(db_url: str) -> None:
    # Before revision 0002 the scheduler created its own two tables on first start.
    from datetime import UTC, datetime

    from sqlalchemy import MetaData, func, select

    from bot.audit.models import job_runs, scheduler_jobs

    engine = schema.make_engine(db_url)
    try:
        schema.upgrade(engine, revision="0001")
        legacy = MetaData()
        runs, jobs = job_runs.to_metadata(legacy), scheduler_jobs.to_metadata(legacy)
        legacy.create_all(engine)
        slot = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(runs.insert().values(job_id="digest:C1", slot=slot, owner="old",
                                              claimed_at=slot, status="ok"))
            conn.execute(jobs.insert().values(id="digest:C1", next_run_time=1.0,
                                              job_state=b"state"))
        schema.upgrade(engine)
        assert schema.current_revision(engine) == schema.head_revision()
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(job_runs)) == 1
            assert conn.scalar(select(scheduler_jobs.c.job_state)) == b"state"
    finally:
        engine.dispose()
