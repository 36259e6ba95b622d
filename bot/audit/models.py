"""SQLAlchemy 2.0 typed ORM for the audit store.

Tables: received payloads (verbatim), alerts, incidents, drafts, decisions, evidence blobs,
and the append-only, hash-chained ``events`` table with its one-row ``chain_head``; plus the
scheduler's two tables (``bot.jobs``), so migrations own every table the bot writes.
Alembic's ``migrations/env.py`` imports :data:`Base.metadata`; change a model, add a
migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Unicode,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so migrations can drop/alter them on SQLite (batch mode) too.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first event; also the chain head of an empty log."""


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone on the way)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Received(Base):
    """A raw inbound payload (webhook body, Slack event), stored before any parsing."""

    __tablename__ = "received"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    headers: Mapped[dict[str, Any]]
    # Verbatim body; NULL once the retention job purged it (body_sha256 stays, and the
    # hash chain only ever references the digest, so it still verifies).
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    body_sha256: Mapped[str] = mapped_column(String(64))
    body_size: Mapped[int]
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    purged_at: Mapped[datetime | None]


class IncidentRow(Base):
    """A group of alerts sharing a fingerprint (``key``) within a time window."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_key_status", "key", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(64))
    thread_ts: Mapped[str | None] = mapped_column(String(64))
    last_alert_at: Mapped[datetime]
    alert_count: Mapped[int] = mapped_column(Integer, default=1)


class AlertRow(Base):
    """One parsed alert, linked to its raw payload and its incident."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_id: Mapped[int | None] = mapped_column(ForeignKey("received.id"), index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    name: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str | None] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(255), index=True)
    group_key: Mapped[str | None] = mapped_column(Text)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # The whole Alert as JSON (labels, annotations, text, ...), so nothing parsed is lost.
    data: Mapped[dict[str, Any]]


class DraftRow(Base):
    """A triage/postmortem/digest draft with everything needed to reproduce and judge it."""

    __tablename__ = "drafts"
    __table_args__ = (Index("ix_drafts_incident_kind_status", "incident_id", "kind", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    content: Mapped[dict[str, Any]]
    markdown: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(255))
    prompt_template: Mapped[str | None] = mapped_column(String(255))
    prompt_hash: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    evidence_refs: Mapped[list[Any]]
    grounding_score: Mapped[float | None] = mapped_column(Float)
    cache_key: Mapped[str | None] = mapped_column(String(255), index=True)
    notes: Mapped[list[Any]]
    created_at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(64))
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("drafts.id"))


class DecisionRow(Base):
    """A human verdict. At most one per draft: the unique key is the last line of defence
    against two approvers racing."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), unique=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)
    edited_markdown: Mapped[str | None] = mapped_column(Text)
    diff: Mapped[str | None] = mapped_column(Text)
    via: Mapped[str | None] = mapped_column(String(64))


class EvidenceBlob(Base):
    """Raw evidence (log excerpts, query results) addressed by its SHA-256.

    Events cite ``sha256``; the retention job may set ``content`` to NULL later.
    """

    __tablename__ = "evidence_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    media_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int]
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    purged_at: Mapped[datetime | None]


class Event(Base):
    """One append-only audit event. Written only by ``bot.audit.chain.append_event``.

    ``seq`` is contiguous from 1; ``hash = sha256(prev_hash + canonical_json(seq, at, type,
    subject, payload))``. ``at`` is kept as ISO-8601 text so the hashed bytes never depend
    on how a backend round-trips timestamps.
    """

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ChainHead(Base):
    """The single row naming the last event. Updating it first in a transaction is how
    appends serialise (row lock on PostgreSQL, write lock on SQLite); comparing it with the
    last event also reveals a truncated tail."""

    __tablename__ = "chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


# --- the scheduler's tables (bot.jobs) --------------------------------------------------

job_runs = Table(
    "hotwash_job_runs", Base.metadata,
    Column("job_id", String(191), primary_key=True),
    Column("slot", DateTime(timezone=True), primary_key=True),
    Column("owner", String(191), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),
    Column("outcome", Text),
)
"""Claims: one row per (job, scheduled slot), won by exactly one replica."""

scheduler_jobs = Table(
    "apscheduler_jobs", Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
"""APScheduler 3's ``SQLAlchemyJobStore`` table, declared as that class declares it; the job
store only creates it when it is missing, so a migrated database is used as it is."""
