"""Small in-memory implementations of the evidence ports, and the demo incident's evidence.

They stand in for Elasticsearch/file logs and the Chroma runbook index in pipeline tests:
the pipeline sees only the ports, so these exercise it exactly as the real adapters would,
including their failure modes (an exception from ``collect``/``match``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.audit.store import AuditStore, build_store
from bot.domain import (
    Alert,
    AlertSource,
    Draft,
    EvidenceGap,
    EvidenceItem,
    EvidenceKind,
    EvidencePart,
    RunbookMatch,
)
from bot.ports import ChatModel
from bot.services import Services
from bot.settings import Settings

STARTS = datetime(2026, 11, 28, 14, 2, tzinfo=UTC)


class InMemoryLogSource:
    """Returns a fixed EvidencePart, or raises ``error`` (an adapter that broke its promise)."""

    name = "memory-logs"

    def __init__(self, part: EvidencePart | None = None, *, error: Exception | None = None):
        self.part = part or EvidencePart()
        self.error = error
        self.calls: list[Alert] = []
        self.closed = False

    def collect(self, alert: Alert) -> EvidencePart:
        self.calls.append(alert)
        if self.error is not None:
            raise self.error
        return self.part

    def close(self) -> None:
        self.closed = True


class InMemoryRunbookIndex:
    """Returns fixed matches, or raises ``error`` (Chroma down)."""

    def __init__(self, matches: list[RunbookMatch] | None = None, *,
                 error: Exception | None = None):
        self.matches = matches or []
        self.error = error

    def match(self, query: Alert | str, *, limit: int = 3) -> list[RunbookMatch]:
        if self.error is not None:
            raise self.error
        return self.matches[:limit]


class UnsavableStore(AuditStore):
    """A real store whose database refuses new drafts (disk full, DB down)."""

    def save_draft(self, *, draft: Draft) -> Draft:
        raise OSError("database is locked")


def checkout_alert(**changes: object) -> Alert:
    alert = Alert(
        name="CheckoutHighErrorRate", source=AlertSource.ALERTMANAGER, severity="critical",
        labels={"alertname": "CheckoutHighErrorRate", "service": "checkout",
                "namespace": "shop", "severity": "critical", "job": "checkout"},
        summary="checkout 5xx ratio above 5% for 5m",
        description="HTTP 5xx responses from checkout rose sharply after deploy v2.14.0.",
        starts_at=STARTS, fingerprint="fp-checkout-1", channel="C-ALERTS",
    )
    return alert.model_copy(update=changes)


def log_item(n: int, text: str, *, new: bool = True, count: int = 10,
             level: str = "ERROR") -> EvidenceItem:
    return EvidenceItem(
        id=f"L{n}", kind=EvidenceKind.LOG_TEMPLATE, title=text[:60], text=text,
        source="memory:logs-checkout", count=count, level=level, is_new=new, score=count / 100,
        first_seen=STARTS - timedelta(minutes=3), last_seen=STARTS,
    )


def checkout_logs(*extra: EvidenceItem) -> EvidencePart:
    return EvidencePart(items=(
        log_item(1, "HikariPool-1 - Connection is not available, request timed out after "
                    "30000ms", count=412),
        log_item(2, "upstream returned 503 Service Unavailable for POST /api/checkout",
                 count=388),
        log_item(3, "GET /health 200 in <*> ms", new=False, count=900, level="INFO"),
        *extra,
    ))


POOL_RUNBOOK = RunbookMatch(
    id="checkout/db-connection-pool", title="Checkout: database connection pool exhausted",
    score=0.82, section="Mitigation",
    text="- Check active connections on the HikariPool dashboard\n"
         "- Raise the pool size: `kubectl -n shop set env deploy/checkout DB_POOL_MAX=40`\n"
         "- If a deploy doubled queries per request, roll back: "
         "`kubectl -n shop rollout undo deploy/checkout`\n",
    sections=("Symptoms", "Diagnosis", "Mitigation"),
)
UPSTREAM_RUNBOOK = RunbookMatch(
    id="general/upstream-5xx", title="Upstream 5xx errors", score=0.41, section="Diagnosis",
    text="- Find which upstream returns 503\n- Check its saturation\n",
)


def make_services(tmp: Path, *, models: list[ChatModel] | None = None,
                  logs: InMemoryLogSource | None = None,
                  runbooks: InMemoryRunbookIndex | None = None,
                  store: AuditStore | None = None, **settings: object) -> Services:
    """Services around the real SQLite audit store and in-memory evidence ports."""
    config = Settings(data_dir=tmp / "data", **settings)  # type: ignore[arg-type]
    return Services(
        settings=config,
        store=store or build_store(config),
        runbooks=runbooks or InMemoryRunbookIndex([POOL_RUNBOOK, UPSTREAM_RUNBOOK]),
        logs=logs or InMemoryLogSource(checkout_logs()),
        models=models if models is not None else [],
    )


def gap(source: str, error: str, query: str) -> EvidenceGap:
    return EvidenceGap(source=source, error=error, query=query)
