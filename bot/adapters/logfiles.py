"""The embedded log source: log files on disk, no Elasticsearch needed.

Reads NDJSON records in ECS shape (nested objects or flattened dotted keys) and plain
text lines that start with a timestamp (``2026-11-28T14:02:11.123Z ERROR ...``,
``2026-11-28 14:02:11,123 [WARN] ...``). NDJSON records with APM span fields
(``transaction.name``/``span.name`` with ``event.duration``) are spans. Filters from
alert labels apply to NDJSON fields exactly as the Elasticsearch terms filter does; plain
text lines have no fields, so label filters cannot exclude them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.condense import (
    ERROR_LEVELS,
    LogLine,
    Span,
    VolumeCounter,
    condense,
    error_trace_ids,
    normalize_level,
)
from bot.domain import Alert, EvidenceGap, EvidencePart
from bot.logsource import (
    Caps,
    ReadCap,
    field_map,
    get_field,
    label_filters,
    parse_timestamp,
    record_to_line,
    record_to_span,
    scalar,
    window_for,
)
from bot.redaction import Redactor
from bot.settings import Settings

MAX_SPANS = 100_000
_SUFFIXES = {".ndjson", ".jsonl", ".json", ".log", ".txt"}
_TEXT_LINE = re.compile(
    r"^\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?"
    r"(?:Z|[+-]\d{2}:?\d{2})?)\]?\s+"
    r"(?:\[?(?P<level>TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|SEVERE)\]?:?\s+)?"
    r"(?P<msg>.*)$",
    re.IGNORECASE,
)


def parse_text_line(text: str) -> LogLine | None:
    """A plain text line with a timestamp prefix -> LogLine (None when there is none)."""
    m = _TEXT_LINE.match(text)
    if not m:
        return None
    ts = parse_timestamp(m.group("ts"))
    if ts is None:
        return None
    return LogLine(timestamp=ts, message=m.group("msg"), level=m.group("level"))


def _swap_in_error(overflow: list[LogLine], line: LogLine, cap: ReadCap) -> None:
    """Replace the latest non-error line of ``overflow`` with the error ``line``,
    when the byte cap allows it."""
    size = len(line.message.encode("utf-8", errors="replace"))
    for i in range(len(overflow) - 1, -1, -1):
        old = overflow[i]
        if normalize_level(old.level) not in ERROR_LEVELS:
            old_size = len(old.message.encode("utf-8", errors="replace"))
            if cap.bytes - old_size + size <= cap.max_bytes:
                overflow[i] = line
                cap.bytes += size - old_size
            return


def _files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    found: list[Path] = []
    missing: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*")
                                if p.is_file() and p.suffix.lower() in _SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            missing.append(path)
    return found, missing


class FileLogSource:
    """LogSource over local files (the embedded default used by ``make demo``)."""

    def __init__(self, *, paths: list[Path], settings: Settings, redactor: Redactor) -> None:
        self.paths = list(paths)
        self.settings = settings
        self.redactor = redactor
        self.fields = field_map(settings)
        self.name = "files:" + ",".join(str(p) for p in self.paths)

    def _records(self, files: list[Path]) -> Iterator[tuple[dict[str, Any] | None, str]]:
        for file in files:
            with file.open(encoding="utf-8", errors="replace") as fh:
                for raw in fh:
                    raw = raw.rstrip("\n")
                    if not raw.strip():
                        continue
                    if raw.lstrip().startswith("{"):
                        try:
                            record = json.loads(raw)
                        except json.JSONDecodeError:
                            record = None
                        if isinstance(record, dict):
                            yield record, raw
                            continue
                    yield None, raw

    def collect(self, alert: Alert) -> EvidencePart:
        """Read, filter by window and labels, condense. File errors become gaps."""
        s = self.settings
        window = window_for(alert, before_s=s.log_window_before_s,
                            after_s=s.log_window_after_s, baseline_s=s.log_baseline_s)
        filters = label_filters(alert, label_fields=s.es_label_fields)
        query = json.dumps({"paths": [str(p) for p in self.paths],
                            "window": [window.start.isoformat(), window.end.isoformat()],
                            "baseline_from": window.baseline_start.isoformat(),
                            "filters": filters}, sort_keys=True)
        files, missing = _files(self.paths)
        gaps = [EvidenceGap(source=self.name, error=f"log path not found: {p}", query=query)
                for p in missing]
        lines: list[LogLine] = []
        baseline: list[LogLine] = []
        spans: list[Span] = []
        caps = Caps.from_settings(s)
        main = ReadCap(caps.window_lines, caps.window_bytes)
        reserve = ReadCap(caps.error_lines, caps.error_bytes)
        base = ReadCap(caps.baseline_lines, caps.baseline_bytes)
        # Lines past the main cap: errors win over other lines, so a chatty window
        # cannot crowd out the errors that matter.
        overflow: list[LogLine] = []
        counter = VolumeCounter(start=window.start, end=window.end,
                                baseline_s=window.baseline_seconds)
        try:
            for record, raw in self._records(files):
                if record is not None:
                    # Spans are picked by the trace ids of error lines, not by labels.
                    span = record_to_span(record)
                    if span is not None:
                        if len(spans) < MAX_SPANS:
                            spans.append(span)
                        continue
                    if not all(scalar(get_field(record, f)) in vals
                               for f, vals in filters.items()):
                        continue
                    line = record_to_line(record, self.fields)
                else:
                    line = parse_text_line(raw)
                if line is None:
                    continue
                if window.start <= line.timestamp < window.end:
                    counter.add(line)
                    if main.admit(line):
                        lines.append(line)
                    elif reserve.admit(line):
                        overflow.append(line)
                    elif normalize_level(line.level) in ERROR_LEVELS:
                        _swap_in_error(overflow, line, reserve)
                elif window.baseline_start <= line.timestamp < window.start:
                    counter.add_baseline(line)
                    if base.admit(line):
                        baseline.append(line)
        except OSError as exc:
            gaps.append(EvidenceGap(source=self.name, error=f"could not read logs: {exc}",
                                    query=query))
            return EvidencePart(gaps=tuple(gaps))
        lines += overflow
        capped = reserve.hit
        kept_bytes = main.bytes + reserve.bytes + base.bytes
        lines.sort(key=lambda ln: ln.timestamp)
        baseline.sort(key=lambda ln: ln.timestamp)
        wanted = set(error_trace_ids(lines))
        related = [sp for sp in spans if sp.trace_id in wanted]
        volume = counter.volume()
        part = condense(lines=lines, baseline=baseline, volume=volume, redactor=self.redactor,
                        budget_tokens=s.log_evidence_tokens, source=self.name, spans=related,
                        capped=capped, window=window.label())
        stats = {**part.stats, "files": len(files), "bytes_kept": kept_bytes}
        return part.model_copy(update={"gaps": tuple(gaps), "stats": stats})

    def close(self) -> None:
        """Nothing to release: files are opened and closed per collect."""
