"""Alert-channel digests: window statistics computed from SQL, rendered as Block Kit.

Every number in a digest comes from a query over the audit store (alerts, incidents,
drafts, decisions); none is generated. A model may add a short narrative, which is
labelled as model-written and placed after the numbers.

Which channel an alert belongs to: the channel of its incident (``incidents.channel``,
set when Hotwash posts the incident). ``channel=None`` means every channel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import Session

from bot import metrics, telemetry
from bot.audit.models import AlertRow, DecisionRow, DraftRow, IncidentRow
from bot.domain import DecisionAction, DraftKind, DraftStatus
from bot.ports import ChatMessage, ChatModel, ChatRequest, ModelError

if TYPE_CHECKING:
    from bot.audit.store import AuditStore
    from bot.jobs import JobRun

log = logging.getLogger(__name__)

TOP_N = 5
NARRATIVE_LABEL = "Narrative (written by a model from the numbers above; check them)"
SEVERITY_ORDER = ("critical", "error", "high", "warning", "medium", "low", "info", "none")


@dataclass(frozen=True)
class Counted:
    """A label and how often it occurred in the window."""

    label: str
    count: int


@dataclass(frozen=True)
class Durations:
    """Summary of durations in seconds (None when there were no samples)."""

    samples: int = 0
    median_s: float | None = None
    max_s: float | None = None


@dataclass(frozen=True)
class DigestStats:
    """What one digest reports for one channel and window [start, end)."""

    channel: str | None
    start: datetime
    end: datetime
    alerts: int = 0
    firing: int = 0
    resolved_alerts: int = 0
    by_severity: tuple[Counted, ...] = ()
    by_service: tuple[Counted, ...] = ()
    top_groups: tuple[Counted, ...] = ()
    noisiest: tuple[Counted, ...] = ()
    incidents_opened: int = 0
    incidents_resolved: int = 0
    pending_drafts: int = 0
    pending_draft_ids: tuple[int, ...] = ()
    oldest_pending_s: float | None = None
    time_to_first_draft: Durations = field(default_factory=Durations)
    time_to_approval: Durations = field(default_factory=Durations)

    @property
    def quiet(self) -> bool:
        """Nothing happened and nothing waits: no digest is worth posting."""
        return self.alerts == 0 and self.incidents_resolved == 0 and self.pending_drafts == 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data


# --- computing ------------------------------------------------------------------------


def _in_channel(channel: str | None) -> ColumnElement[bool]:
    return IncidentRow.channel == channel if channel is not None else true()


def _durations(values: Sequence[float]) -> Durations:
    clean = [max(0.0, v) for v in values]
    if not clean:
        return Durations()
    return Durations(samples=len(clean), median_s=float(statistics.median(clean)),
                     max_s=max(clean))


def _counted(rows: Sequence[Any]) -> tuple[Counted, ...]:
    return tuple(Counted(str(label), int(count)) for label, count in rows)


def compute_digest(*, store: AuditStore, channel: str | None, start: datetime,
                   end: datetime) -> DigestStats:
    """Window statistics for ``channel`` over [start, end), straight from SQL."""
    with store.read() as session:
        return _compute(session, channel=channel, start=start, end=end)


def _compute(session: Session, *, channel: str | None, start: datetime,
             end: datetime) -> DigestStats:
    in_window = and_(AlertRow.created_at >= start, AlertRow.created_at < end)
    alerts = (
        select(AlertRow.id)
        .join(IncidentRow, AlertRow.incident_id == IncidentRow.id)
        .where(in_window, _in_channel(channel))
    )
    scoped = AlertRow.id.in_(alerts)

    total = session.scalar(select(func.count()).where(scoped).select_from(AlertRow)) or 0
    firing = session.scalar(
        select(func.count()).select_from(AlertRow).where(scoped, AlertRow.status == "firing")
    ) or 0

    severity = func.lower(func.coalesce(AlertRow.severity, "none"))
    by_severity = session.execute(
        select(severity, func.count()).where(scoped).group_by(severity)
    ).all()
    by_severity = sorted(
        by_severity,
        key=lambda r: (SEVERITY_ORDER.index(r[0]) if r[0] in SEVERITY_ORDER else 99, r[0]),
    )

    service = func.coalesce(
        AlertRow.data[("labels", "service")].as_string(),
        AlertRow.data[("labels", "job")].as_string(),
        "(no service label)",
    )
    by_service = session.execute(
        select(service, func.count()).where(scoped).group_by(service)
        .order_by(func.count().desc(), service)
    ).all()

    groups = session.execute(
        select(IncidentRow.title, IncidentRow.id, func.count())
        .join(AlertRow, AlertRow.incident_id == IncidentRow.id)
        .where(scoped)
        .group_by(IncidentRow.id, IncidentRow.title)
        .having(func.count() > 1)
        .order_by(func.count().desc(), IncidentRow.id)
        .limit(TOP_N)
    ).all()
    top_groups = tuple(Counted(f"#{iid} {title}", int(n)) for title, iid, n in groups)

    noisiest = session.execute(
        select(AlertRow.name, func.count()).where(scoped, AlertRow.status == "firing")
        .group_by(AlertRow.name)
        .order_by(func.count().desc(), AlertRow.name)
        .limit(TOP_N)
    ).all()

    opened = session.scalar(
        select(func.count()).select_from(IncidentRow)
        .where(IncidentRow.opened_at >= start, IncidentRow.opened_at < end, _in_channel(channel))
    ) or 0
    resolved = session.scalar(
        select(func.count()).select_from(IncidentRow)
        .where(IncidentRow.resolved_at >= start, IncidentRow.resolved_at < end,
               _in_channel(channel))
    ) or 0

    # Pending drafts as of the end of the window, in this channel (posted there, or
    # belonging to an incident of this channel).
    pending_where = [DraftRow.status == DraftStatus.PENDING.value, DraftRow.created_at < end]
    if channel is not None:
        pending_where.append(or_(DraftRow.channel == channel, IncidentRow.channel == channel))
    pending_rows = session.execute(
        select(DraftRow.id, DraftRow.created_at)
        .outerjoin(IncidentRow, DraftRow.incident_id == IncidentRow.id)
        .where(*pending_where)
        .order_by(DraftRow.created_at)
    ).all()
    oldest = (end - pending_rows[0][1]).total_seconds() if pending_rows else None

    # Time to first triage draft, for incidents opened in the window.
    first_draft = session.execute(
        select(IncidentRow.opened_at, func.min(DraftRow.created_at))
        .join(DraftRow, DraftRow.incident_id == IncidentRow.id)
        .where(IncidentRow.opened_at >= start, IncidentRow.opened_at < end,
               _in_channel(channel), DraftRow.kind == DraftKind.TRIAGE.value)
        .group_by(IncidentRow.id, IncidentRow.opened_at)
    ).all()

    # Time from draft to approval, for approvals made in the window.
    approvals = session.execute(
        select(DraftRow.created_at, DecisionRow.at)
        .join(DecisionRow, DecisionRow.draft_id == DraftRow.id)
        .outerjoin(IncidentRow, DraftRow.incident_id == IncidentRow.id)
        .where(DecisionRow.at >= start, DecisionRow.at < end,
               DecisionRow.action.in_([DecisionAction.APPROVE.value,
                                       DecisionAction.EDIT_APPROVE.value]),
               or_(DraftRow.channel == channel, IncidentRow.channel == channel)
               if channel is not None else true())
    ).all()

    return DigestStats(
        channel=channel,
        start=start,
        end=end,
        alerts=int(total),
        firing=int(firing),
        resolved_alerts=int(total) - int(firing),
        by_severity=_counted(by_severity),
        by_service=_counted(by_service[:TOP_N]),
        top_groups=top_groups,
        noisiest=_counted(noisiest),
        incidents_opened=int(opened),
        incidents_resolved=int(resolved),
        pending_drafts=len(pending_rows),
        pending_draft_ids=tuple(int(r[0]) for r in pending_rows),
        oldest_pending_s=oldest,
        time_to_first_draft=_durations(
            [(first - opened_at).total_seconds() for opened_at, first in first_draft]),
        time_to_approval=_durations([(at - created).total_seconds() for created, at in approvals]),
    )


# --- rendering (pure) -----------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    """``75`` -> ``1m 15s``; ``None`` -> ``n/a``."""
    if seconds is None:
        return "n/a"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def _window_label(stats: DigestStats) -> str:
    span = human_duration((stats.end - stats.start).total_seconds())
    return f"{span} ending {stats.end.strftime('%Y-%m-%d %H:%M')} UTC"


def _counted_line(items: Sequence[Counted]) -> str:
    return ", ".join(f"{c.label} {c.count}" for c in items) if items else "none"


def _durations_line(d: Durations) -> str:
    if d.samples == 0:
        return "n/a (no samples)"
    return (f"median {human_duration(d.median_s)}, max {human_duration(d.max_s)} "
            f"({d.samples} sample{'s' if d.samples != 1 else ''})")


def digest_lines(stats: DigestStats) -> list[tuple[str, str]]:
    """(label, value) rows shared by the Block Kit and Markdown renderings."""
    pending = str(stats.pending_drafts)
    if stats.pending_drafts:
        ids = ", ".join(f"#{i}" for i in stats.pending_draft_ids[:10])
        pending += f" ({ids}; oldest waiting {human_duration(stats.oldest_pending_s)})"
    return [
        ("Alerts", f"{stats.alerts} ({stats.firing} firing, {stats.resolved_alerts} resolved)"),
        ("By severity", _counted_line(stats.by_severity)),
        ("By service", _counted_line(stats.by_service)),
        ("Recurring groups", _counted_line(stats.top_groups)),
        ("Noisiest alerts", _counted_line(stats.noisiest)),
        ("Incidents", f"{stats.incidents_opened} opened, {stats.incidents_resolved} resolved"),
        ("Drafts awaiting approval", pending),
        ("Time to first draft", _durations_line(stats.time_to_first_draft)),
        ("Time to approval", _durations_line(stats.time_to_approval)),
    ]


def digest_title(stats: DigestStats) -> str:
    where = f"<#{stats.channel}>" if stats.channel else "all channels"
    return f"Hotwash digest for {where}: {_window_label(stats)}"


def digest_markdown(stats: DigestStats, *, narrative: str | None = None) -> str:
    """The digest as Markdown (CLI output, exports)."""
    lines = [f"## {digest_title(stats)}", ""]
    lines += [f"- **{label}:** {value}" for label, value in digest_lines(stats)]
    if narrative:
        lines += ["", f"_{NARRATIVE_LABEL}:_", "", narrative.strip()]
    return "\n".join(lines) + "\n"


def digest_blocks(stats: DigestStats, *, narrative: str | None = None) -> list[dict[str, Any]]:
    """The digest as Block Kit: computed numbers first, the optional narrative labelled."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Hotwash digest"[:150]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": digest_title(stats)}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(
            f"*{label}:* {value}" for label, value in digest_lines(stats))[:3000]}},
    ]
    if narrative:
        blocks += [
            {"type": "divider"},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{NARRATIVE_LABEL}_"}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": narrative.strip()[:3000]}},
        ]
    return blocks


def digest_text(stats: DigestStats) -> str:
    """Notification fallback text."""
    return (f"{digest_title(stats)}: {stats.alerts} alerts, {stats.incidents_opened} incidents "
            f"opened, {stats.pending_drafts} drafts awaiting approval")


# --- narrative (optional) -------------------------------------------------------------

NARRATIVE_SYSTEM = (
    "You summarise alert-channel statistics for on-call engineers in at most three short "
    "sentences. Use only the numbers given; do not invent causes, services or figures."
)


def narrate(*, stats: DigestStats, models: Sequence[ChatModel], max_tokens: int = 200,
            seed: int | None = None) -> str | None:
    """A short model-written narrative of ``stats``, or None (no model, or all failed)."""
    if stats.quiet:
        return None
    request = ChatRequest(
        messages=(ChatMessage(role="system", content=NARRATIVE_SYSTEM),
                  ChatMessage(role="user", content=json.dumps(stats.as_dict(), default=str))),
        max_tokens=max_tokens, temperature=0.0, seed=seed, schema_name="digest_narrative",
    )
    prompt_hash = hashlib.sha256(request.messages[-1].content.encode()).hexdigest()
    for model in models:
        started = time.perf_counter()
        try:
            response = model.complete(request)
        except ModelError as exc:
            log.warning("digest narrative: model %s failed: %s", model.name, exc)
            metrics.record_model_call(model=model.name, seconds=time.perf_counter() - started,
                                      error="error")
            telemetry.log_model_call(model=model.name, model_version=None,
                                     prompt_hash=prompt_hash, prompt_template="digest_narrative",
                                     error="error")
            continue
        # Counted like any model call (no price here: the digest has no settings in hand).
        metrics.record_model_call(model=model.name, seconds=response.latency_ms / 1000,
                                  prompt_tokens=response.prompt_tokens,
                                  completion_tokens=response.completion_tokens)
        telemetry.log_model_call(model=model.name, model_version=response.model,
                                 prompt_hash=prompt_hash, prompt_template="digest_narrative",
                                 prompt_tokens=response.prompt_tokens,
                                 completion_tokens=response.completion_tokens,
                                 latency_ms=response.latency_ms)
        text = response.text.strip()
        if text:
            return text[:600]
    return None


# --- the scheduled job ----------------------------------------------------------------


def post_digest(*, run: JobRun) -> str:
    """Job ``digest``: compute the window ending at the run's slot and post it."""
    services = run.context.need_services()
    channel = run.params.get("channel")
    window = run.window or timedelta(hours=1)
    stats = compute_digest(store=services.store, channel=channel, start=run.slot - window,
                           end=run.slot)
    if stats.quiet:
        return f"{channel}: quiet window, nothing posted"
    if run.context.slack is None or channel is None:
        return f"{channel}: no Slack poster configured; digest computed, not posted"
    narrative = narrate(stats=stats, models=services.models,
                        seed=run.context.settings.llm_seed) if services.models else None
    ts = run.context.slack.post(channel=channel, text=digest_text(stats),
                                blocks=digest_blocks(stats, narrative=narrative))
    services.store.record_event(type="digest.posted", subject=f"channel:{channel}",
                                payload={"channel": channel, "ts": ts,
                                         "stats": stats.as_dict(),
                                         "narrative": narrative is not None})
    return f"{channel}: digest posted ({stats.alerts} alerts, ts {ts})"
