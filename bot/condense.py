"""Condensing: thousands of log lines -> a few cited, redacted evidence items.

Log templates are mined with Drain3 (He et al., "Drain: An Online Log Parsing Approach
with Fixed Depth Tree", ICWS 2017). The baseline window is mined first, so a template
seen for the first time in the alert window is marked **new**: new error templates are
the strongest signal a deploy or a dependency broke something. Per template we keep the
count, the worst level, first/last seen, the baseline count and one redacted example.

Items are ranked by novelty, severity, rate change and count, and emitted as E1, E2, ...
until the token budget is spent. Text leaves this module only through the Redactor.
Both log sources (Elasticsearch and files) feed the same functions here, so they
condense identically.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from bot.domain import EvidenceItem, EvidenceKind, EvidencePart
from bot.redaction import Redactor
from bot.tokens import count_tokens

# Drain3 announces every miner at INFO; one per alert is noise in our logs.
logging.getLogger("drain3.template_miner").setLevel(logging.WARNING)

# Canonical levels and how much each one counts when ranking.
LEVEL_ALIASES = {
    "fatal": "critical", "critical": "critical", "crit": "critical", "emerg": "critical",
    "emergency": "critical", "alert": "critical", "panic": "critical",
    "error": "error", "err": "error", "severe": "error",
    "warn": "warning", "warning": "warning",
    "info": "info", "notice": "info", "information": "info", "informational": "info",
    "debug": "debug", "trace": "debug", "fine": "debug", "finer": "debug", "finest": "debug",
}
SEVERITY = {"critical": 4, "error": 3, "warning": 2, "info": 1, "debug": 0}
_LEVEL_WEIGHT = {"critical": 45.0, "error": 35.0, "warning": 15.0, "info": 0.0, "debug": -5.0}
ERROR_LEVELS = ("critical", "error")


def normalize_level(raw: object) -> str | None:
    """Map ERROR/err/SEVERE/notice/... to critical|error|warning|info|debug (None if unknown)."""
    if raw is None:
        return None
    return LEVEL_ALIASES.get(str(raw).strip().lower())


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log record, already mapped from its source's fields."""

    timestamp: datetime
    message: str
    level: str | None = None
    service: str | None = None
    trace_id: str | None = None
    host: str | None = None
    pod: str | None = None
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class Span:
    """One APM span or transaction (ECS: transaction.name, span.name, event.*)."""

    trace_id: str
    name: str
    service: str | None = None
    transaction: str | None = None
    duration_us: float = 0.0
    outcome: str | None = None
    timestamp: datetime | None = None


@dataclass
class LogVolume:
    """Counts over time by level, and by service, for the window and the baseline.

    Elasticsearch fills this from aggregations (exact, even when reading is capped);
    the file source counts the lines it read.
    """

    interval_s: int
    start: datetime
    buckets: list[dict[str, int]] = field(default_factory=list)
    services: dict[str, int] = field(default_factory=dict)
    error_services: dict[str, int] = field(default_factory=dict)
    levels: dict[str, int] = field(default_factory=dict)
    total: int = 0
    baseline_total: int = 0
    baseline_levels: dict[str, int] = field(default_factory=dict)
    baseline_s: int = 0


def error_trace_ids(lines: Iterable[LogLine], *, limit: int = 50) -> list[str]:
    """Distinct trace ids of error lines, in order of appearance (for span lookup)."""
    out: dict[str, None] = {}
    for line in lines:
        if line.trace_id and normalize_level(line.level) in ERROR_LEVELS:
            out.setdefault(line.trace_id, None)
            if len(out) >= limit:
                break
    return list(out)


def histogram_interval(span_s: float) -> int:
    """A readable bucket size giving about 20-40 buckets over ``span_s`` seconds."""
    for step in (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400):
        if span_s / step <= 40:
            return step
    return 86400


class VolumeCounter:
    """Counts lines per time bucket, level and service without keeping the lines."""

    def __init__(self, *, start: datetime, end: datetime, baseline_s: int) -> None:
        self.start = start
        self.interval = histogram_interval((end - start).total_seconds())
        self.n = max(1, math.ceil((end - start).total_seconds() / self.interval))
        self.buckets: list[Counter[str]] = [Counter() for _ in range(self.n)]
        self.levels: Counter[str] = Counter()
        self.services: Counter[str] = Counter()
        self.error_services: Counter[str] = Counter()
        self.baseline_levels: Counter[str] = Counter()
        self.baseline_s = baseline_s

    def add(self, line: LogLine) -> None:
        level = normalize_level(line.level) or "unknown"
        idx = int((line.timestamp - self.start).total_seconds() // self.interval)
        if 0 <= idx < self.n:
            self.buckets[idx][level] += 1
        self.levels[level] += 1
        if line.service:
            self.services[line.service] += 1
            if level in ERROR_LEVELS:
                self.error_services[line.service] += 1

    def add_baseline(self, line: LogLine) -> None:
        self.baseline_levels[normalize_level(line.level) or "unknown"] += 1

    def volume(self) -> LogVolume:
        return LogVolume(
            interval_s=self.interval, start=self.start,
            buckets=[dict(b) for b in self.buckets], services=dict(self.services),
            error_services=dict(self.error_services),
            levels=dict(self.levels), total=sum(self.levels.values()),
            baseline_total=sum(self.baseline_levels.values()),
            baseline_levels=dict(self.baseline_levels), baseline_s=self.baseline_s,
        )


def volume_from_lines(*, lines: Sequence[LogLine], baseline: Sequence[LogLine],
                      start: datetime, end: datetime, baseline_s: int) -> LogVolume:
    """Count lines per bucket and level (what Elasticsearch's aggregations return)."""
    counter = VolumeCounter(start=start, end=end, baseline_s=baseline_s)
    for line in lines:
        counter.add(line)
    for line in baseline:
        counter.add_baseline(line)
    return counter.volume()


# Variable parts masked before Drain sees a line: they make templates stable and let
# repeated lines skip the tree search. Versions (v2.14.0) and names like HikariPool-1
# are kept: they are what an engineer recognises.
_MASK = re.compile(
    r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<ip>(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.]))"
    r"|(?P<hex>(?<![\w-])(?:0x)?(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}(?![\w-]))"
    r"|(?P<num>(?<![\w.-])[-+]?\d+(?:\.\d+)?(?:ms|us|µs|ns|s|m|h|b|kb|mb|gb|%)?(?![\w.]))"
)


def _mask(message: str) -> str:
    return _MASK.sub("<*>", message)


@dataclass
class _Template:
    cluster_id: int
    count: int = 0
    baseline_count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    levels: Counter[str] = field(default_factory=Counter)
    services: Counter[str] = field(default_factory=Counter)
    example: LogLine | None = None
    trace_ids: list[str] = field(default_factory=list)
    line_indexes: list[int] = field(default_factory=list)

    @property
    def level(self) -> str | None:
        known = [lv for lv in self.levels if lv in SEVERITY]
        return max(known, key=lambda lv: SEVERITY[lv]) if known else None


class TemplateMining:
    """Drain3 over masked messages, with a cache so repeated lines skip the tree search."""

    def __init__(self, *, sim_th: float = 0.4, depth: int = 6) -> None:
        config = TemplateMinerConfig()
        config.drain_sim_th = sim_th
        config.drain_depth = depth
        config.profiling_enabled = False
        self._miner = TemplateMiner(config=config)
        self._seen: dict[str, int] = {}

    def add(self, message: str) -> int:
        """The cluster id of ``message`` (mining it when its masked form is new)."""
        masked = _mask(message.strip())
        cluster_id = self._seen.get(masked)
        if cluster_id is None:
            cluster_id = int(self._miner.add_log_message(masked)["cluster_id"])
            self._seen[masked] = cluster_id
        return cluster_id

    def template(self, cluster_id: int) -> str:
        cluster = self._miner.drain.id_to_cluster.get(cluster_id)
        return str(cluster.get_template()) if cluster is not None else ""

    def cluster_count(self) -> int:
        return len(self._miner.drain.clusters)


def group_lines(messages: Iterable[str], *, sim_th: float = 0.4) -> list[int]:
    """Cluster id per message (for measuring grouping accuracy against ground truth)."""
    mining = TemplateMining(sim_th=sim_th)
    return [mining.add(m) for m in messages]


@dataclass(frozen=True)
class Condensed:
    """Templates mined from one window, before they are cut to a budget."""

    templates: list[_Template]
    mining: TemplateMining
    baseline_lines: int
    window_lines: int


def mine(*, lines: Sequence[LogLine], baseline: Sequence[LogLine],
         sim_th: float = 0.4) -> Condensed:
    """Mine baseline then window lines; per-template stats for the window.

    A template is a Drain cluster *at one level*: ``status=<*>`` at ERROR is a different
    finding from the same words at INFO, and is new when the baseline never had it.
    """
    mining = TemplateMining(sim_th=sim_th)
    baseline_counts: Counter[tuple[int, str]] = Counter()
    for line in baseline:
        baseline_counts[(mining.add(line.message), normalize_level(line.level) or "")] += 1
    by_key: dict[tuple[int, str], _Template] = {}
    for index, line in enumerate(lines):
        cid = mining.add(line.message)
        level = normalize_level(line.level)
        key = (cid, level or "")
        t = by_key.get(key)
        if t is None:
            t = by_key[key] = _Template(cluster_id=cid)
            t.example = line
        t.count += 1
        t.line_indexes.append(index)
        if level:
            t.levels[level] += 1
        if line.service:
            t.services[line.service] += 1
        if t.first_seen is None or line.timestamp < t.first_seen:
            t.first_seen = line.timestamp
        if t.last_seen is None or line.timestamp > t.last_seen:
            t.last_seen = line.timestamp
        if line.trace_id and len(t.trace_ids) < 5 and line.trace_id not in t.trace_ids:
            t.trace_ids.append(line.trace_id)
    for key, t in by_key.items():
        t.baseline_count = baseline_counts.get(key, 0)
    return Condensed(templates=list(by_key.values()), mining=mining,
                     baseline_lines=len(baseline), window_lines=len(lines))


def score_template(t: _Template, *, baseline_known: bool, window_s: float,
                   baseline_s: float) -> tuple[float, float | None]:
    """(score, rate ratio vs baseline). Novelty first, then severity, rate change, count."""
    level = t.level or "info"
    score = _LEVEL_WEIGHT.get(level, 0.0) + 6.0 * math.log10(1 + t.count)
    ratio: float | None = None
    if baseline_known:
        if t.baseline_count == 0:
            score += 100.0 if SEVERITY.get(level, 1) >= SEVERITY["warning"] else 40.0
        elif window_s > 0 and baseline_s > 0:
            ratio = (t.count / window_s) / (t.baseline_count / baseline_s)
            if ratio >= 2:
                score += min(30.0, 10.0 * math.log2(ratio))
    return score, ratio


def _clock(ts: datetime | None) -> str:
    return ts.strftime("%H:%M:%SZ") if ts else "?"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Candidate:
    score: float
    kind: EvidenceKind
    title: str
    text: str
    count: int = 1
    level: str | None = None
    is_new: bool = False
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    ref: str | None = None
    attrs: dict[str, object] = field(default_factory=dict)
    tail: str | None = None  # one-line form for the long-tail list
    redactions: int = 0


def summarize_spans(spans: Sequence[Span], *, limit: int = 5) -> list[_Candidate]:
    """Slowest and failing spans, grouped by (service, name)."""
    if not spans:
        return []
    groups: dict[tuple[str, str], list[Span]] = {}
    for s in spans:
        groups.setdefault((s.service or "?", s.name), []).append(s)
    traces = len({s.trace_id for s in spans})
    out: list[_Candidate] = []
    failing = sorted(
        ((k, [s for s in g if (s.outcome or "").lower() == "failure"], g)
         for k, g in groups.items()),
        key=lambda x: -len(x[1]),
    )
    failing = [f for f in failing if f[1]][:limit]
    if failing:
        lines = []
        for (service, name), bad, group in failing:
            slowest = max(bad, key=lambda s: s.duration_us)
            lines.append(f"- {service} {name}: {len(bad)}/{len(group)} failed, "
                         f"max {slowest.duration_us / 1000:.0f} ms (trace {slowest.trace_id})")
        n_bad = sum(len(f[1]) for f in failing)
        out.append(_Candidate(
            score=90.0, kind=EvidenceKind.TRACE,
            title=f"Failing spans: {n_bad} of {len(spans)} spans in {traces} traces",
            text="Failing spans (outcome=failure), by service and span:\n" + "\n".join(lines),
            count=n_bad, level="error",
            ref=max(failing[0][1], key=lambda s: s.duration_us).trace_id,
            attrs={"traces": traces, "spans": len(spans)},
        ))
    slow = sorted(groups.items(), key=lambda kv: -max(s.duration_us for s in kv[1]))[:limit]
    lines = []
    for (service, name), group in slow:
        durations = sorted(s.duration_us for s in group)
        p50 = durations[len(durations) // 2]
        worst = max(group, key=lambda s: s.duration_us)
        lines.append(f"- {service} {name}: max {durations[-1] / 1000:.0f} ms, "
                     f"p50 {p50 / 1000:.0f} ms over {len(group)} spans (trace {worst.trace_id})")
    worst_all = max(spans, key=lambda s: s.duration_us)
    out.append(_Candidate(
        score=55.0, kind=EvidenceKind.TRACE,
        title=f"Slowest spans in {traces} traces from error lines",
        text="Slowest spans, by service and span:\n" + "\n".join(lines),
        count=len(spans), ref=worst_all.trace_id, attrs={"traces": traces, "spans": len(spans)},
    ))
    return out


def _summary(volume: LogVolume, *, condensed: Condensed, capped: bool, window: str) -> _Candidate:
    def levels(counts: dict[str, int]) -> str:
        order = sorted(counts.items(), key=lambda kv: (-SEVERITY.get(kv[0], -1), kv[0]))
        return ", ".join(f"{lv.upper()} {n:,}" for lv, n in order) or "none"

    errors = [sum(b.get(lv, 0) for lv in ERROR_LEVELS) for b in volume.buckets]
    first_error_bucket = next((i for i, e in enumerate(errors) if e), None)
    parts = [f"Window {window}: {volume.total:,} lines ({levels(volume.levels)})."]
    if volume.services:
        top = sorted(volume.services.items(), key=lambda kv: -kv[1])[:5]
        parts.append("Services: " + ", ".join(f"{s} {n:,}" for s, n in top) + ".")
    if volume.error_services:
        top = sorted(volume.error_services.items(), key=lambda kv: -kv[1])[:5]
        parts.append("Errors by service: " + ", ".join(f"{s} {n:,}" for s, n in top) + ".")
    if volume.baseline_s:
        parts.append(f"Baseline (previous {volume.baseline_s // 60} min): "
                     f"{volume.baseline_total:,} lines ({levels(volume.baseline_levels)}).")
    if errors:
        step = volume.interval_s
        unit = f"{step // 60} min" if step >= 60 else f"{step} s"
        parts.append(f"Errors per {unit} from {_clock(volume.start)}: "
                     + " ".join(str(e) for e in errors) + ".")
        if first_error_bucket is not None:
            at = volume.start + timedelta(seconds=first_error_bucket * step)
            parts.append(f"First errors in the bucket starting {_clock(at)}.")
    new = sum(1 for t in condensed.templates if t.baseline_count == 0)
    parts.append(f"{len(condensed.templates)} templates in the window"
                 + (f", {new} not seen in the baseline." if condensed.baseline_lines else
                    "; no baseline lines, so novelty is unknown."))
    if capped:
        parts.append(f"Reading stopped at a cap after {condensed.window_lines:,} lines; "
                     "templates cover those lines only.")
    return _Candidate(score=1e6, kind=EvidenceKind.NOTE, title="Log volume around the alert",
                      text=" ".join(parts), count=volume.total,
                      attrs={"errors_per_bucket": errors, "interval_s": volume.interval_s})


TAIL_SHARE = 0.3
PRECURSOR_WINDOW = timedelta(minutes=10)


def _redacted(cand: _Candidate, redactor: Redactor) -> tuple[_Candidate, int]:
    """The candidate with redacted title and text, and its token cost."""
    title, n_title = redactor.redact(cand.title)
    text, n_text = redactor.redact(cand.text)
    clean = replace(cand, title=title, text=text, redactions=n_title + n_text)
    return clean, count_tokens(title) + count_tokens(text) + 12  # id, kind, attributes


def _select(candidates: list[_Candidate], *, redactor: Redactor,
            budget: int) -> tuple[list[tuple[_Candidate, int]], list[_Candidate]]:
    """Best-first within ``budget``: (chosen with costs, the rest)."""
    chosen: list[tuple[_Candidate, int]] = []
    rest: list[_Candidate] = []
    used = 0
    for cand in candidates:
        clean, cost = _redacted(cand, redactor)
        if used + cost > budget:
            rest.append(cand)
            continue
        used += cost
        chosen.append((clean, cost))
    return chosen, rest


def _tail(rest: list[_Candidate], *, redactor: Redactor,
          budget: int) -> tuple[tuple[_Candidate, int] | None, set[int]]:
    """One item listing the remaining templates, one line each, within ``budget``;
    also the ids of the candidates it lists."""
    listed: set[int] = set()
    order: list[int] = []
    lines: list[str] = []
    keys: list[str] = []
    counts: list[int] = []
    found: list[int] = []  # redactions per line (the joined text is already clean)
    used = count_tokens("Other log templates") + 12
    for cand in rest:
        if cand.tail is None:
            continue
        line, hits = redactor.redact(cand.tail)
        cost = count_tokens(line)
        if used + cost > budget:
            continue
        used += cost
        lines.append(line)
        found.append(hits)
        listed.add(id(cand))
        order.append(id(cand))
        keys.append(str(cand.attrs.get("template_key")))
        counts.append(cand.count)
    while lines:
        tail = _Candidate(score=0.0, kind=EvidenceKind.LOG_TEMPLATE,
                          title=f"Other log templates ({len(lines)})", text="\n".join(lines),
                          count=sum(counts), attrs={"template_keys": list(keys)})
        clean, cost = _redacted(tail, redactor)
        if cost <= budget:
            return (replace(clean, redactions=clean.redactions + sum(found)), cost), listed
        lines.pop()  # the estimate of the whole is a little above the sum of its lines
        keys.pop()
        counts.pop()
        found.pop()
        listed.discard(order.pop())
    return None, listed


def condense(*, lines: Sequence[LogLine], baseline: Sequence[LogLine], volume: LogVolume,
             redactor: Redactor, budget_tokens: int, source: str,
             spans: Sequence[Span] = (), capped: bool = False, start_index: int = 1,
             window: str = "", sim_th: float = 0.4) -> EvidencePart:
    """Condense one window of logs (and spans) into ranked, redacted evidence items."""
    condensed = mine(lines=lines, baseline=baseline, sim_th=sim_th)
    window_s = volume.interval_s * max(1, len(volume.buckets))
    baseline_known = bool(baseline)
    candidates = [_summary(volume, condensed=condensed, capped=capped, window=window)]
    candidates += summarize_spans(spans)
    first_new_error = min(
        (t.first_seen for t in condensed.templates
         if baseline_known and t.baseline_count == 0 and t.level in ERROR_LEVELS
         and t.first_seen is not None), default=None)
    for t in condensed.templates:
        score, ratio = score_template(t, baseline_known=baseline_known, window_s=window_s,
                                      baseline_s=float(volume.baseline_s))
        is_new = baseline_known and t.baseline_count == 0
        # A new quiet line just before the first new error is often the change that
        # caused it (a deploy, a restart, a flag flip): rank it with the errors' context.
        precursor = bool(
            is_new and first_new_error is not None and t.first_seen is not None
            and t.level not in ERROR_LEVELS
            and first_new_error - PRECURSOR_WINDOW <= t.first_seen <= first_new_error
        )
        if precursor:
            score += 35.0
        template = condensed.mining.template(t.cluster_id)
        example = t.example
        level = t.level
        tags = []
        if is_new:
            tags.append("NEW")
        if ratio is not None and ratio >= 2:
            tags.append(f"x{ratio:.0f} vs baseline")
        if precursor:
            tags.append("just before the first new error")
        head = f"[{', '.join(tags)}] " if tags else ""
        services = ", ".join(s for s, _ in t.services.most_common(3))
        text_lines = [
            f"{head}{(level or 'unknown').upper()} x{t.count:,} "
            f"{_clock(t.first_seen)}-{_clock(t.last_seen)}"
            + (f", baseline x{t.baseline_count:,}" if baseline_known else "")
            + (f", services {services}" if services else ""),
        ]
        # One line when the template says it all (a single line, or nothing masked).
        if example is None or (t.count > 1 and "<*>" in template):
            text_lines.append(f"template: {_clip(template, 240)}")
        if example is not None:
            text_lines.append(f"example {_clock(example.timestamp)}: "
                              f"{_clip(example.message, 240)}")
        if t.trace_ids:
            text_lines.append("trace ids: " + ", ".join(t.trace_ids[:3]))
        candidates.append(_Candidate(
            score=score, kind=EvidenceKind.LOG_TEMPLATE, title=_clip(template, 120),
            text="\n".join(text_lines), count=t.count, level=level, is_new=is_new,
            first_seen=t.first_seen, last_seen=t.last_seen,
            ref=t.trace_ids[0] if t.trace_ids else None,
            tail=f"- {(level or 'unknown').upper()} x{t.count:,}{' NEW' if is_new else ''}: "
                 f"{_clip(template, 160)}",
            attrs={"template_key": f"{t.cluster_id}:{level or ''}",
                   "baseline_count": t.baseline_count, "services": dict(t.services),
                   "levels": dict(t.levels), "trace_ids": list(t.trace_ids),
                   "rate_ratio": round(ratio, 2) if ratio is not None else None},
        ))
    candidates.sort(key=lambda c: -c.score)
    chosen, rest = _select(candidates, redactor=redactor, budget=budget_tokens)
    if rest:
        # Not everything fits in full: give back the lowest-ranked full items until a
        # share of the budget is free for a one-line-per-template list of the rest, so
        # the long tail stays visible and citable.
        used = sum(cost for _, cost in chosen)
        left_out = {id(c) for c in rest}
        originals = [c for c in candidates if id(c) not in left_out]  # parallel to chosen
        while len(chosen) > 2 and used > budget_tokens * (1 - TAIL_SHARE):
            _, cost = chosen.pop()
            used -= cost
            rest.insert(0, originals.pop())
        tail, listed = _tail(rest, redactor=redactor, budget=budget_tokens - used)
        if tail is not None:
            chosen.append(tail)
            rest = [c for c in rest if id(c) not in listed]
    items: list[EvidenceItem] = []
    redactions = sum(c.redactions for c, _ in chosen)
    used = sum(cost for _, cost in chosen)
    skipped = len(rest)
    for cand, _ in chosen:
        items.append(EvidenceItem(
            id=f"E{start_index + len(items)}", kind=cand.kind, title=cand.title, text=cand.text,
            source=source, score=round(cand.score, 2), count=cand.count, level=cand.level,
            is_new=cand.is_new, first_seen=cand.first_seen, last_seen=cand.last_seen,
            ref=cand.ref, attrs=cand.attrs,
        ))
    stats = {
        "lines": len(lines), "baseline_lines": len(baseline), "spans": len(spans),
        "templates": len(condensed.templates),
        "new_templates": sum(1 for t in condensed.templates
                             if baseline_known and t.baseline_count == 0),
        "items": len(items), "omitted": skipped, "tokens": used, "capped": capped,
    }
    return EvidencePart(items=tuple(items), redactions=redactions, stats=stats)
