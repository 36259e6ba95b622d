"""Gather the evidence for one alert, and fit it into the prompt's token budget.

Every source is asked once; a source that fails becomes an :class:`EvidenceGap` carrying
the exact query, never an exception (a failing Chroma or Elasticsearch must not cost us
the draft). Alert text is redacted here; log evidence is redacted again as a second line
of defence (redaction is idempotent, so already-clean text is unchanged).

Evidence ids: ``E1`` is the alert itself, ``E2..`` log templates and traces in the order
the log source ranked them, ``R1..`` the matched runbook sections.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from bot import telemetry
from bot.domain import (
    Alert,
    Evidence,
    EvidenceGap,
    EvidenceItem,
    EvidenceKind,
    RunbookMatch,
)
from bot.ports import LogSource, RunbookIndex
from bot.redaction import Redactor
from bot.tokens import count_tokens

log = logging.getLogger(__name__)

# Per-item cost of the <evidence ...> wrapper in the prompt, in tokens.
_WRAPPER_TOKENS = 24
# Below this many tokens a truncated item says too little to be worth sending.
_MIN_USEFUL_TOKENS = 48


class EvidenceCache:
    """Evidence gathered for an alert in the last ``ttl_s`` seconds.

    A re-delivered alert (Alertmanager repeat, webhook retry, Slack retry) arrives within
    seconds with the same fingerprint and start time; re-reading thousands of log lines to
    learn that nothing changed would cost the cache-hit path most of its time. Evidence with
    gaps is never kept: a source that failed is asked again next time.
    """

    def __init__(self, *, ttl_s: float = 60.0, max_entries: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, Evidence]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(alert: Alert) -> tuple[str, str, str]:
        return (alert.fingerprint, alert.starts_at.isoformat(), alert.status)

    def get(self, alert: Alert) -> Evidence | None:
        """Evidence still fresh for this alert, or None."""
        with self._lock:
            entry = self._entries.get(self.key(alert))
            if entry is None or self._clock() - entry[0] > self.ttl_s:
                return None
            return entry[1]

    def put(self, alert: Alert, evidence: Evidence) -> None:
        """Remember complete evidence (no gaps) for this alert."""
        if evidence.gaps or self.ttl_s <= 0:
            return
        with self._lock:
            self._entries[self.key(alert)] = (self._clock(), evidence)
            self._entries.move_to_end(self.key(alert))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def alert_text(alert: Alert) -> str:
    """The alert's facts as plain text, one per line."""
    lines = [f"alert: {alert.name} ({alert.status})"]
    if alert.severity:
        lines.append(f"severity: {alert.severity}")
    lines.append(f"started: {alert.starts_at.isoformat()}")
    if alert.ends_at:
        lines.append(f"ended: {alert.ends_at.isoformat()}")
    if alert.labels:
        lines.append("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))
    for key in ("summary", "description"):
        value = getattr(alert, key)
        if value:
            lines.append(f"{key}: {value}")
    for key, value in sorted(alert.annotations.items()):
        if key not in ("summary", "description") and value:
            lines.append(f"{key}: {value}")
    if alert.text:
        lines.append(f"message: {alert.text}")
    if alert.generator_url:
        lines.append(f"source: {alert.generator_url}")
    return "\n".join(lines)


def gather(*, alert: Alert, logs: LogSource, runbooks: RunbookIndex, redactor: Redactor,
           runbook_limit: int = 3) -> Evidence:
    """Alert facts, log/trace evidence and matching runbooks; failures kept as gaps."""
    redactions = 0
    text, hits = redactor.redact(alert_text(alert))
    redactions += hits
    items: list[EvidenceItem] = [EvidenceItem(
        id="E1", kind=EvidenceKind.ALERT, title=f"Alert {alert.name}", text=text,
        source=f"alert:{alert.source}", level=alert.severity, first_seen=alert.starts_at,
    )]
    gaps: list[EvidenceGap] = []
    stats: dict[str, object] = {}

    source_name = getattr(logs, "name", "logs")
    try:
        with telemetry.stage("logs") as logs_stage:
            part = logs.collect(alert)
            if part.gaps:
                logs_stage.fail(f"{len(part.gaps)} gap(s)")
    except Exception as exc:  # the port promises gaps, but an adapter bug must not cost the draft
        log.warning("log source %s failed: %s", source_name, exc)
        gaps.append(EvidenceGap(source=str(source_name), error=_describe(exc)))
    else:
        gaps.extend(part.gaps)
        redactions += part.redactions
        stats["logs"] = dict(part.stats)
        for n, item in enumerate(part.items, start=2):
            clean, hits = redactor.redact(item.text)
            redactions += hits
            items.append(item.model_copy(update={
                "id": f"E{n}", "text": clean,
                "attrs": {**item.attrs, "source_id": item.id},
            }))

    matches: list[RunbookMatch] = []
    try:
        with telemetry.stage("retrieval"):
            matches = list(runbooks.match(alert, limit=runbook_limit))
    except Exception as exc:
        log.warning("runbook index failed: %s", exc)
        gaps.append(EvidenceGap(source="runbooks", error=_describe(exc),
                                query=alert.query_text()))
    for n, match in enumerate(matches, start=1):
        items.append(runbook_item(match, item_id=f"R{n}"))

    # Error messages and queries can carry credentials (a URL with a password, a header);
    # they reach the prompt and the draft, so they are redacted like any other text.
    clean_gaps = []
    for gap in gaps:
        error, hits = redactor.redact(gap.error)
        query, more = redactor.redact(gap.query) if gap.query else (None, 0)
        redactions += hits + more
        clean_gaps.append(gap.model_copy(update={"error": error, "query": query}))
    return Evidence(alert=alert, items=tuple(items), runbooks=tuple(matches),
                    gaps=tuple(clean_gaps), redactions=redactions, stats=stats)


def runbook_item(match: RunbookMatch, *, item_id: str) -> EvidenceItem:
    """A matched runbook section as citable evidence."""
    title = f"{match.title} > {match.section}" if match.section else match.title
    return EvidenceItem(
        id=item_id, kind=EvidenceKind.RUNBOOK, title=title, text=match.text or match.title,
        source=f"runbook:{match.id}", score=match.score,
        ref=f"{match.id}#{match.section}" if match.section else match.id,
        attrs={"runbook_id": match.id, "sections": list(match.sections)},
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _priority(item: EvidenceItem) -> tuple[int, float, int]:
    """Alert first, then new templates, runbook steps, then everything else."""
    if item.kind == EvidenceKind.ALERT:
        rank = 0
    elif item.kind == EvidenceKind.NOTE or (
        item.is_new and item.kind in (EvidenceKind.LOG_TEMPLATE, EvidenceKind.TRACE)
    ):
        # Notes are the log source's own summary (volume, when errors began): short and
        # as telling as the new templates.
        rank = 1
    elif item.kind == EvidenceKind.RUNBOOK:
        rank = 2
    else:
        rank = 3
    return (rank, -item.score, -item.count)


def fit_budget(evidence: Evidence, *, budget_tokens: int,
               count: Callable[[str], int] = count_tokens) -> Evidence:
    """Keep the most useful evidence within ``budget_tokens``, in priority order.

    Items that do not fit whole are cut (if enough room is left to say something) or left
    out; the counts land in ``stats`` so the draft can say what was not considered.
    """
    kept: list[EvidenceItem] = []
    remaining = budget_tokens
    omitted = truncated = 0
    for item in sorted(evidence.items, key=_priority):
        cost = count(item.text) + _WRAPPER_TOKENS
        if cost <= remaining:
            kept.append(item)
            remaining -= cost
            continue
        room = remaining - _WRAPPER_TOKENS
        if room >= _MIN_USEFUL_TOKENS or item.kind == EvidenceKind.ALERT:
            keep_chars = max(80, int(len(item.text) * max(room, 0) / max(cost, 1)))
            kept.append(item.model_copy(update={"text": item.text[:keep_chars] + " …[cut]"}))
            remaining -= count(kept[-1].text) + _WRAPPER_TOKENS
            truncated += 1
        else:
            omitted += 1
    stats = {**evidence.stats, "budget_tokens": budget_tokens,
             "evidence_tokens": budget_tokens - remaining,
             "omitted_for_budget": omitted, "truncated_for_budget": truncated}
    return evidence.model_copy(update={"items": tuple(kept), "stats": stats})


def evidence_hash(evidence: Evidence) -> str:
    """sha256 of what the model would see: item ids, texts, counts, flags, gaps."""
    payload = [
        [i.id, str(i.kind), i.title, i.text, i.count, i.is_new, i.ref] for i in evidence.items
    ] + [["gap", g.source, g.error, g.query] for g in evidence.gaps]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
