"""Frozen domain types that travel the one road: Alert -> Evidence -> Draft -> Decision.

Everything here is plain data (pydantic, frozen). No I/O, no clients.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlertSource(StrEnum):
    ALERTMANAGER = "alertmanager"
    GRAFANA = "grafana"
    SLACK = "slack"
    PAGERDUTY = "pagerduty"
    DATADOG = "datadog"
    TEXT = "text"


class Alert(Frozen):
    """One alert (or one human symptom report), normalised from any payload."""

    name: str = Field(description="alertname, or a short title for a symptom message")
    source: AlertSource = AlertSource.TEXT
    status: Literal["firing", "resolved"] = "firing"
    severity: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    summary: str = ""
    description: str = ""
    text: str = Field(default="", description="free text (Slack message body)")
    starts_at: datetime = Field(default_factory=utcnow)
    ends_at: datetime | None = None
    generator_url: str | None = None
    fingerprint: str = Field(description="stable id of this alert series")
    group_key: str | None = None
    received_id: int | None = Field(default=None, description="audit row of the raw payload")
    channel: str | None = None
    thread_ts: str | None = None

    def query_text(self) -> str:
        """Text that describes the alert, for retrieval and prompts."""
        parts = [self.name, self.summary, self.description, self.text]
        for key in ("service", "job", "namespace", "container", "app", "component"):
            if key in self.labels:
                parts.append(f"{key}={self.labels[key]}")
        return "\n".join(p for p in parts if p)


class Incident(Frozen):
    """A group of alerts sharing a fingerprint within a time window."""

    id: int
    key: str
    title: str
    status: Literal["open", "resolved"] = "open"
    opened_at: datetime
    resolved_at: datetime | None = None
    channel: str | None = None
    thread_ts: str | None = None
    alert_count: int = 1


class EvidenceKind(StrEnum):
    ALERT = "alert"
    LOG_TEMPLATE = "log_template"
    TRACE = "trace"
    RUNBOOK = "runbook"
    TIMELINE = "timeline"
    NOTE = "note"


class EvidenceItem(Frozen):
    """One citable piece of evidence: E1, E2, ... (R1.. for runbooks, T1.. for timeline)."""

    id: str
    kind: EvidenceKind
    title: str
    text: str = Field(description="redacted text shown to models and humans")
    source: str = Field(description="where it came from, e.g. elasticsearch:logs-*")
    score: float = 0.0
    count: int = 1
    level: str | None = None
    is_new: bool = False
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    ref: str | None = Field(default=None, description="runbook id#section, trace id, ...")
    attrs: dict[str, Any] = Field(default_factory=dict)


class EvidenceGap(Frozen):
    """A context source that failed; kept as data, with the exact query sent."""

    source: str
    error: str
    query: str | None = None


class RunbookMatch(Frozen):
    """A runbook ranked for an alert or a message."""

    id: str = Field(description="path relative to the runbooks dir, without .md")
    title: str
    score: float = Field(description="calibrated 0..1")
    section: str = Field(description="best section heading path, e.g. 'Diagnosis > Pods'")
    text: str = Field(default="", description="best section text")
    sections: tuple[str, ...] = ()


class EvidencePart(Frozen):
    """What one context source returns: items, gaps, redaction count, stats."""

    items: tuple[EvidenceItem, ...] = ()
    gaps: tuple[EvidenceGap, ...] = ()
    redactions: int = 0
    stats: dict[str, Any] = Field(default_factory=dict)


class Evidence(Frozen):
    """Everything gathered for one alert, ready for a prompt."""

    alert: Alert
    items: tuple[EvidenceItem, ...] = ()
    runbooks: tuple[RunbookMatch, ...] = ()
    gaps: tuple[EvidenceGap, ...] = ()
    redactions: int = 0
    stats: dict[str, Any] = Field(default_factory=dict)

    def by_id(self) -> dict[str, EvidenceItem]:
        return {item.id: item for item in self.items}


class DraftKind(StrEnum):
    TRIAGE = "triage"
    POSTMORTEM = "postmortem"
    DIGEST = "digest"


class DraftStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


class Draft(Frozen):
    """A model- or evidence-written suggestion, pending until a human decides."""

    id: int | None = None
    kind: DraftKind
    status: DraftStatus = DraftStatus.PENDING
    incident_id: int | None = None
    content: dict[str, Any] = Field(description="structured output (JSON)")
    markdown: str
    model: str = Field(description="model name, or 'evidence-only'")
    prompt_template: str | None = None
    prompt_hash: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="decoding params, seed")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    evidence_refs: tuple[str, ...] = ()
    grounding_score: float | None = None
    cache_key: str | None = None
    notes: tuple[str, ...] = Field(default=(), description="degradations shown to the approver")
    created_at: datetime = Field(default_factory=utcnow)
    channel: str | None = None
    message_ts: str | None = None


class DecisionAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    EDIT_APPROVE = "edit_approve"


class Decision(Frozen):
    """A human's verdict on a draft."""

    id: int | None = None
    draft_id: int
    action: DecisionAction
    actor: str
    at: datetime = Field(default_factory=utcnow)
    reason: str | None = None
    edited_markdown: str | None = None
    diff: str | None = None
