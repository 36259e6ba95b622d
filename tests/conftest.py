"""Shared test fixtures. Fakes for Slack, Elasticsearch and the model live under tests/fakes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from bot.audit.store import AuditStore

_KEEP = {"HOTWASH_TEST_POSTGRES_URL", "HOTWASH_EVAL_BASE_URL", "HOTWASH_EVAL_MODEL",
         "HOTWASH_EVAL_API_KEY"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No HOTWASH_* setting leaks in from the machine; each test runs in its own folder."""
    for key in list(os.environ):
        if key.startswith("HOTWASH_") and key not in _KEEP:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    """The checkout's top folder (tests run with the cwd in a temporary folder)."""
    return REPO_ROOT


# --- databases: the audit store on SQLite and PostgreSQL --------------------------------

POSTGRES_URL_ENV = "HOTWASH_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of the shared PostgreSQL server's admin database; skips when unset."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set: PostgreSQL tests skipped")
    return url


def _create_pg_database(admin_url: str) -> tuple[str, str]:
    """CREATE DATABASE hotwash_test_<random>; returns (name, url). Other engineers share the
    server, so every database gets a random name and is dropped by its creator."""
    import secrets

    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    name = f"hotwash_test_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def pg_session_url(pg_admin_url: str) -> Iterator[str]:
    """One throwaway, empty PostgreSQL database for the whole test session (dropped at the
    end). Cheap to share when your tests tolerate each other's rows."""
    name, url = _create_pg_database(pg_admin_url)
    yield url
    _drop_pg_database(pg_admin_url, name)


@pytest.fixture
def pg_url(pg_session_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test, inside the session's throwaway
    database; the URL sets it as search_path, so code under test sees an empty database.
    Dropped afterwards. (A schema costs milliseconds; CREATE DATABASE ~0.35 s.)"""
    import secrets

    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    name = f"t_{secrets.token_hex(6)}"
    admin = create_engine(pg_session_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        yield make_url(pg_session_url).update_query_dict(
            {"options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '20s'"))
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    finally:
        admin.dispose()


def _migrated_store(url: str) -> AuditStore:
    from bot.audit.schema import make_engine, upgrade
    from bot.audit.store import AuditStore

    engine = make_engine(url)
    upgrade(engine)
    return AuditStore(engine=engine)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    """A migrated AuditStore on a SQLite file in tmp_path."""
    audit = _migrated_store(f"sqlite:///{tmp_path / 'audit.db'}")
    yield audit
    audit.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[AuditStore]:
    """A migrated AuditStore on a fresh PostgreSQL database."""
    audit = _migrated_store(pg_url)
    yield audit
    audit.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once on SQLite and once on PostgreSQL (skipped without it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def any_store(db_url: str) -> Iterator[AuditStore]:
    """A migrated AuditStore, once per backend."""
    audit = _migrated_store(db_url)
    yield audit
    audit.close()
