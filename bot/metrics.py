"""Prometheus metrics for every Hotwash SLI, on one dedicated registry.

Every room records through the small ``record_*`` functions below rather than touching
metric objects, so label values pass one guard: labels stay low-cardinality. No function
takes alert text, a user id or a channel id; free-form values (model names, Slack API
methods and error codes, alert sources) are checked against a safe character set, a
Slack-id shape and a per-label cap on distinct values, and anything else becomes
``other``. Durations are seconds, money is USD.

Exposure: :func:`metrics_app` is an ASGI app for ``/metrics`` on the HTTP server;
:func:`serve_metrics` runs a small standalone port for Socket Mode (``metrics_port``).
Several replicas are scraped one by one; sum counters across ``instance`` in queries.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_asgi_app,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry Hotwash exposes; the process-global default registry stays untouched."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Stage = Literal[
    "parse", "evidence", "logs", "retrieval", "prompt", "model", "grounding", "store", "post"
]
"""Stages of the triage road, each timed separately."""
TriagePath = Literal["model", "fallback", "evidence_only"]
"""Which drafter wrote the draft that was posted (see :func:`triage_path`)."""
Backend = Literal["elasticsearch", "chroma", "database", "slack", "model"]
DraftKind = Literal["triage", "postmortem", "digest"]
DraftStatus = Literal["pending", "approved", "rejected", "superseded"]
DecisionAction = Literal["approve", "reject", "edit_approve"]

# Triage latency buckets include the SLO threshold (30 s) so the burn-rate rule can read
# ``le="30"`` directly.
TRIAGE_SLO_SECONDS = 30.0
_TRIAGE_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 180, 300)
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
_MODEL_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120)
_APPROVAL_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)

# -- metric objects ----------------------------------------------------------------------

TRIAGE_SECONDS = Histogram(
    "hotwash_triage_seconds",
    "End-to-end triage latency: alert received -> draft posted.",
    ["path"], buckets=_TRIAGE_BUCKETS, registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "hotwash_stage_seconds", "Latency of one triage stage.",
    ["stage"], buckets=_STAGE_BUCKETS, registry=REGISTRY,
)
STAGE_ERRORS = Counter(
    "hotwash_stage_errors", "Stages that failed (the pipeline carried on degraded).",
    ["stage"], registry=REGISTRY,
)
MODEL_SECONDS = Histogram(
    "hotwash_model_request_seconds", "Latency of one model request (successful or not).",
    ["model"], buckets=_MODEL_BUCKETS, registry=REGISTRY,
)
MODEL_REQUESTS = Counter(
    "hotwash_model_requests", "Model requests by outcome.",
    ["model", "outcome"], registry=REGISTRY,
)
MODEL_ERRORS = Counter(
    "hotwash_model_errors", "Failed model requests by kind (timeout, rate_limited, ...).",
    ["model", "kind"], registry=REGISTRY,
)
TOKENS = Counter(
    "hotwash_tokens", "Tokens reported by the model server.",
    ["model", "kind"], registry=REGISTRY,
)
COST = Counter(
    "hotwash_cost_usd", "Model spend in USD, from configured prices.",
    ["model"], registry=REGISTRY,
)
CACHE_HITS = Counter(
    "hotwash_cache_hits", "Cache hits.", ["cache"], registry=REGISTRY,
)
CACHE_MISSES = Counter(
    "hotwash_cache_misses", "Cache misses.", ["cache"], registry=REGISTRY,
)
FALLBACKS = Counter(
    "hotwash_fallback_steps", "Steps taken down the fallback chain.",
    ["from_model", "to_model", "reason"], registry=REGISTRY,
)
REDACTIONS = Counter(
    "hotwash_redactions", "Secrets and personal data redacted before leaving the process.",
    ["where"], registry=REGISTRY,
)
SAFETY_HITS = Counter(
    "hotwash_safety_filter_hits", "Safety-filter hits on model output.",
    ["rule"], registry=REGISTRY,
)
GROUNDING_FAILURES = Counter(
    "hotwash_grounding_failures", "Drafts whose claims failed the grounding check.",
    ["reason"], registry=REGISTRY,
)
DRAFTS = Counter(
    "hotwash_drafts", "Drafts entering a status (pending on creation, then a decision).",
    ["kind", "status"], registry=REGISTRY,
)
DECISIONS = Counter(
    "hotwash_decisions", "Human decisions on drafts.",
    ["kind", "action"], registry=REGISTRY,
)
APPROVAL_SECONDS = Histogram(
    "hotwash_approval_seconds", "Time from a draft's creation to a human decision.",
    ["kind", "action"], buckets=_APPROVAL_BUCKETS, registry=REGISTRY,
)
ALERTS_RECEIVED = Counter(
    "hotwash_alerts_received", "Alerts received, by source.", ["source"], registry=REGISTRY,
)
ALERTS_DEDUPLICATED = Counter(
    "hotwash_alerts_deduplicated",
    "Alerts dropped as repeats (idempotency key or an open incident).",
    ["source"], registry=REGISTRY,
)
SLACK_ERRORS = Counter(
    "hotwash_slack_api_errors", "Slack Web API calls that failed.",
    ["method", "error"], registry=REGISTRY,
)
SLACK_RATE_LIMITED = Counter(
    "hotwash_slack_rate_limited", "Slack Web API calls answered with HTTP 429.",
    ["method"], registry=REGISTRY,
)
BACKEND_ERRORS = Counter(
    "hotwash_backend_errors", "Errors talking to Elasticsearch, Chroma or the database.",
    ["backend", "operation"], registry=REGISTRY,
)
QUOTA_USE = Gauge(
    "hotwash_quota_use_ratio",
    "Share of the daily token quota used by the channel of this replica's latest triage.",
    registry=REGISTRY,
)
QUOTA_REFUSALS = Counter(
    "hotwash_quota_refusals",
    "Model calls skipped because a channel's daily token quota was spent.",
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "hotwash_build_info", "Always 1; labels carry the running version.",
    ["version"], registry=REGISTRY,
)

# -- label guard -------------------------------------------------------------------------

OTHER = "other"
MAX_VALUES_PER_LABEL = 32
# Slack user, channel, team and bot ids (U0123ABCD, C04..., W..., T..., B...).
_SLACK_ID = re.compile(r"^[UWCGDTSBE][A-Z0-9]{7,}$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,80}$")


class LabelGuard:
    """Keeps free-form label values few and free of identifiers."""

    def __init__(self, limit: int = MAX_VALUES_PER_LABEL) -> None:
        self._limit = limit
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()

    def clean(self, metric: str, label: str, value: object) -> str:
        text = str(value).strip() if value is not None else ""
        if not text:
            return "unknown"
        if not _SAFE_VALUE.match(text) or _SLACK_ID.match(text):
            return OTHER
        with self._lock:
            seen = self._seen.setdefault((metric, label), set())
            if text in seen:
                return text
            if len(seen) >= self._limit:
                return OTHER
            seen.add(text)
            return text


_GUARD = LabelGuard()


def _free(metric: str, label: str, value: object) -> str:
    return _GUARD.clean(metric, label, value)


def _closed(allowed: Any, value: str) -> str:
    """A value of a closed set (a Literal); unknown values become ``other`` at run time
    (mypy already rejects them at check time)."""
    return value if value in get_args(allowed) else OTHER


# -- record functions --------------------------------------------------------------------


def record_alert_received(*, source: str) -> None:
    """One alert arrived (before deduplication)."""
    ALERTS_RECEIVED.labels(source=_free("alerts", "source", source)).inc()


def record_alert_deduplicated(*, source: str) -> None:
    """One alert was a repeat and produced no new triage."""
    ALERTS_DEDUPLICATED.labels(source=_free("alerts", "source", source)).inc()


def record_triage(*, seconds: float, path: TriagePath) -> None:
    """End-to-end latency of one triage, from alert received to draft posted."""
    TRIAGE_SECONDS.labels(path=_closed(TriagePath, path)).observe(max(seconds, 0.0))


def record_stage(*, stage: Stage, seconds: float, ok: bool = True) -> None:
    """Latency of one stage; ``ok=False`` also counts a stage error."""
    name = _closed(Stage, stage)
    STAGE_SECONDS.labels(stage=name).observe(max(seconds, 0.0))
    if not ok:
        STAGE_ERRORS.labels(stage=name).inc()


def record_model_call(*, model: str, seconds: float, prompt_tokens: int = 0,
                      completion_tokens: int = 0, cost_usd: float = 0.0,
                      error: str | None = None) -> None:
    """One model request. ``error`` is a short kind (timeout, rate_limited, http_5xx,
    connection, invalid_output, ...) when the request failed."""
    name = _free("model", "model", model)
    MODEL_SECONDS.labels(model=name).observe(max(seconds, 0.0))
    MODEL_REQUESTS.labels(model=name, outcome="error" if error else "ok").inc()
    if error:
        MODEL_ERRORS.labels(model=name, kind=_free("model", "kind", error)).inc()
    if prompt_tokens > 0:
        TOKENS.labels(model=name, kind="prompt").inc(prompt_tokens)
    if completion_tokens > 0:
        TOKENS.labels(model=name, kind="completion").inc(completion_tokens)
    if cost_usd > 0:
        COST.labels(model=name).inc(cost_usd)


def record_cache(*, hit: bool, cache: str = "draft") -> None:
    """One cache lookup (the draft cache, an embedding cache, ...)."""
    (CACHE_HITS if hit else CACHE_MISSES).labels(cache=_free("cache", "cache", cache)).inc()


def record_fallback(*, from_model: str, to_model: str, reason: str) -> None:
    """The chain stepped from one drafter to the next (``to_model='evidence-only'`` at the
    end). ``reason`` is a short kind such as timeout or invalid_output."""
    FALLBACKS.labels(
        from_model=_free("fallback", "model", from_model),
        to_model=_free("fallback", "model", to_model),
        reason=_free("fallback", "reason", reason),
    ).inc()


def record_redactions(*, where: str, count: int) -> None:
    """``count`` redactions applied to text bound for ``where`` (logs, alert, prompt, ...)."""
    if count > 0:
        REDACTIONS.labels(where=_free("redactions", "where", where)).inc(count)


def record_safety_hit(*, rule: str, count: int = 1) -> None:
    """The safety filter matched ``rule`` on model output."""
    if count > 0:
        SAFETY_HITS.labels(rule=_free("safety", "rule", rule)).inc(count)


def record_grounding_failure(*, reason: str) -> None:
    """A draft failed the grounding check (unknown_ref, uncited_claim, low_score, ...)."""
    GROUNDING_FAILURES.labels(reason=_free("grounding", "reason", reason)).inc()


def record_draft(*, kind: DraftKind | str, status: DraftStatus | str) -> None:
    """A draft entered ``status`` (``pending`` when it is created)."""
    DRAFTS.labels(
        kind=_closed(DraftKind, str(kind)), status=_closed(DraftStatus, str(status))
    ).inc()


def triage_path(*, model: str, chain: Sequence[str] | None) -> TriagePath:
    """Which drafter wrote a draft: its ``model`` against the chain it was offered
    (``Draft.params["chain"]``, primary first, ``evidence-only`` last)."""
    if model == "evidence-only":
        return "evidence_only"
    if chain and model != chain[0]:
        return "fallback"
    return "model"


def seconds_between(start: datetime, end: datetime) -> float:
    """``end - start`` in seconds; naive datetimes are taken as UTC."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return (end - start).total_seconds()


def record_decision(*, kind: DraftKind | str, action: DecisionAction | str,
                    seconds: float) -> None:
    """A human decided on a draft ``seconds`` after it was created."""
    labels = {"kind": _closed(DraftKind, str(kind)), "action": _closed(DecisionAction, str(action))}
    DECISIONS.labels(**labels).inc()
    APPROVAL_SECONDS.labels(**labels).observe(max(seconds, 0.0))


def record_slack_error(*, method: str, error: str, status: int | None = None) -> None:
    """A Slack Web API call failed; HTTP 429 / ``ratelimited`` also counts a rate limit."""
    name = _free("slack", "method", method)
    SLACK_ERRORS.labels(method=name, error=_free("slack", "error", error)).inc()
    if status == 429 or error == "ratelimited":
        SLACK_RATE_LIMITED.labels(method=name).inc()


def record_backend_error(*, backend: Backend, operation: str) -> None:
    """A call to Elasticsearch, Chroma or the database failed (``operation``: search,
    query, bulk, upsert, ...)."""
    BACKEND_ERRORS.labels(
        backend=_closed(Backend, backend), operation=_free("backend", "operation", operation)
    ).inc()


@contextmanager
def backend_call(*, backend: Backend, operation: str) -> Iterator[None]:
    """Count an exception leaving the block as a backend error; it still propagates."""
    try:
        yield
    except Exception:
        record_backend_error(backend=backend, operation=operation)
        raise


def record_quota_use(*, ratio: float) -> None:
    """The share of the daily token quota the channel just triaged has used today."""
    QUOTA_USE.set(max(ratio, 0.0))


def record_quota_refusal() -> None:
    """A model call was skipped because the channel's daily quota was spent."""
    QUOTA_REFUSALS.inc()


def record_build(*, version: str) -> None:
    """Publish the running version as ``hotwash_build_info``."""
    BUILD_INFO.clear()
    BUILD_INFO.labels(version=_free("build", "version", version)).set(1)


# -- pending drafts, read from the store at scrape time ----------------------------------


@dataclass(frozen=True)
class PendingDrafts:
    """Pending drafts of one kind: how many, and the age of the oldest in seconds."""

    kind: str
    count: int
    oldest_age_s: float


PendingSource = Callable[[], Iterable[PendingDrafts]]


class _PendingCollector(Collector):
    """Reads pending drafts from the shared store on each scrape, so every replica reports
    the same truth (queries take ``max`` across instances)."""

    def __init__(self) -> None:
        self.source: PendingSource | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        count = GaugeMetricFamily(
            "hotwash_pending_drafts", "Drafts waiting for a human decision.", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "hotwash_oldest_pending_draft_age_seconds",
            "Age of the oldest pending draft.", labels=["kind"],
        )
        up = GaugeMetricFamily(
            "hotwash_pending_drafts_up", "1 when the pending-draft query succeeded."
        )
        source = self.source
        if source is None:
            return []
        try:
            rows = list(source())
        except Exception:  # a scrape must not fail because the database is down
            up.add_metric([], 0)
            BACKEND_ERRORS.labels(backend="database", operation="pending_drafts").inc()
            return [up]
        by_kind = {kind: PendingDrafts(kind, 0, 0.0) for kind in get_args(DraftKind)}
        for row in rows:
            by_kind[_closed(DraftKind, row.kind)] = row
        for kind, row in sorted(by_kind.items()):
            count.add_metric([kind], row.count)
            oldest.add_metric([kind], row.oldest_age_s if row.count else 0.0)
        up.add_metric([], 1)
        return [count, oldest, up]


_PENDING = _PendingCollector()
REGISTRY.register(_PENDING)


def watch_pending_drafts(source: PendingSource | None) -> None:
    """Report pending drafts from ``source`` (called at each scrape); None stops it."""
    _PENDING.source = source


def pending_from_store(store: Any) -> PendingSource:
    """A :data:`PendingSource` reading the audit store (``bot.audit.store.AuditStore``):
    one grouped query per scrape, so every replica reports the shared truth."""
    from sqlalchemy import func, select

    from bot.audit.models import DraftRow

    def read() -> list[PendingDrafts]:
        now = store.now()
        with store.read() as session:
            rows = session.execute(
                select(DraftRow.kind, func.count(), func.min(DraftRow.created_at))
                .where(DraftRow.status == "pending").group_by(DraftRow.kind)
            ).all()
        return [PendingDrafts(kind=str(kind), count=int(count),
                              oldest_age_s=max(seconds_between(oldest, now), 0.0))
                for kind, count, oldest in rows if oldest is not None]

    return read


QuotaSource = Callable[[], float]
"""Returns the highest share of the daily token quota any channel has used today."""


class _QuotaCollector(Collector):
    """The highest per-channel quota use today, read from the shared store at scrape time
    (``hotwash_quota_use_ratio`` is only the last triaged channel on one replica)."""

    def __init__(self) -> None:
        self.source: QuotaSource | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        source = self.source
        if source is None:
            return []
        try:
            ratio = source()
        except Exception:  # a scrape must not fail because the database is down
            BACKEND_ERRORS.labels(backend="database", operation="quota_use").inc()
            return []
        gauge = GaugeMetricFamily(
            "hotwash_quota_highest_use_ratio",
            "Highest share of the daily token quota any one channel has used today (UTC).")
        gauge.add_metric([], ratio)
        return [gauge]


_QUOTA = _QuotaCollector()
REGISTRY.register(_QUOTA)


def watch_quota(source: QuotaSource | None) -> None:
    """Report quota use from ``source`` (called at each scrape); None stops it."""
    _QUOTA.source = source


def quota_from_store(store: Any, *, limit: int) -> QuotaSource:
    """A :data:`QuotaSource` over the audit store: model tokens of today's drafts, summed
    per channel, the largest sum over ``limit`` (the ledger the quota itself reads)."""
    from sqlalchemy import func, select

    from bot.audit.models import DraftRow

    def read() -> float:
        now = store.now()
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        spent = func.sum(DraftRow.prompt_tokens + DraftRow.completion_tokens)
        with store.read() as session:
            top = session.scalar(
                select(spent).where(DraftRow.created_at >= midnight)
                .group_by(DraftRow.channel).order_by(spent.desc()).limit(1))
        return float(top or 0) / limit if limit > 0 else 0.0

    return read


# -- exposure ----------------------------------------------------------------------------


def render() -> bytes:
    """The current metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


def metrics_app() -> Any:
    """An ASGI app serving the metrics; mount it at ``/metrics``."""
    return make_asgi_app(registry=REGISTRY)


class MetricsServer:
    """A standalone metrics port (Socket Mode has no HTTP server of its own)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(*, host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread (port 0 picks a free one)."""
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    return MetricsServer(server, thread)


def sample(name: str, labels: Mapping[str, str] | None = None) -> float:
    """The current value of one sample (0.0 when absent); for tests and benchmarks."""
    value = REGISTRY.get_sample_value(name, dict(labels or {}))
    return float(value) if value is not None else 0.0
