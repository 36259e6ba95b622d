"""Which log source to use, and what both sources share: windows, fields, label filters.

``build_log_source(settings)`` returns the Elasticsearch source when ``HOTWASH_ES_HOSTS``
is set, else the embedded file source over ``HOTWASH_LOG_FILES``. Both implement the
``LogSource`` port and condense through ``bot.condense``, so they behave alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.condense import LogLine, Span
from bot.domain import Alert
from bot.redaction import build_redactor

if TYPE_CHECKING:
    from bot.ports import LogSource
    from bot.settings import Settings

# ECS names for the fields the log source reads; HOTWASH_ES_FIELDS overrides any of them.
DEFAULT_FIELDS: dict[str, str] = {
    "timestamp": "@timestamp",
    "message": "message",
    "level": "log.level",
    "service": "service.name",
    "namespace": "kubernetes.namespace",
    "pod": "kubernetes.pod.name",
    "host": "host.name",
    "trace_id": "trace.id",
    "span_id": "span.id",
    "error_type": "error.type",
    "error_message": "error.message",
}

# ECS APM fields of spans and transactions (traces index).
SPAN_FIELDS: dict[str, str] = {
    "timestamp": "@timestamp",
    "trace_id": "trace.id",
    "transaction": "transaction.name",
    "span": "span.name",
    "duration": "event.duration",  # nanoseconds in ECS
    "outcome": "event.outcome",
    "service": "service.name",
    "transaction_duration_us": "transaction.duration.us",
    "span_duration_us": "span.duration.us",
}


@dataclass(frozen=True)
class Window:
    """The alert window and the baseline window just before it (UTC, end exclusive)."""

    start: datetime
    end: datetime
    baseline_start: datetime

    @property
    def baseline_end(self) -> datetime:
        return self.start

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def baseline_seconds(self) -> int:
        return int((self.start - self.baseline_start).total_seconds())

    def label(self) -> str:
        """e.g. ``2026-11-28 13:50Z to 14:10Z``."""
        same_day = self.start.date() == self.end.date()
        end = self.end.strftime("%H:%MZ" if same_day else "%Y-%m-%d %H:%MZ")
        return f"{self.start:%Y-%m-%d %H:%M}Z to {end}"


@dataclass
class ReadCap:
    """A hard cap on lines read and message bytes kept (memory stays bounded)."""

    max_lines: int
    max_bytes: int
    lines: int = 0
    bytes: int = 0
    hit: bool = False

    def admit(self, line: LogLine) -> bool:
        """Count ``line`` in, or refuse it (and remember the cap was hit)."""
        size = len(line.message.encode("utf-8", errors="replace"))
        if self.lines >= self.max_lines or self.bytes + size > self.max_bytes:
            self.hit = True
            return False
        self.lines += 1
        self.bytes += size
        return True


@dataclass(frozen=True)
class Caps:
    """How ``log_max_lines``/``log_max_bytes`` are shared: the window gets the full line
    cap (a quarter held back for error lines once it fills up), the baseline half of it;
    bytes split two thirds / one third."""

    window_lines: int
    window_bytes: int
    error_lines: int
    error_bytes: int
    baseline_lines: int
    baseline_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Caps:
        lines, size = settings.log_max_lines, settings.log_max_bytes
        window_bytes = max(1, size * 2 // 3)
        reserve = lines // 4
        return cls(window_lines=max(1, lines - reserve),
                   window_bytes=max(1, window_bytes - window_bytes // 4),
                   error_lines=reserve, error_bytes=window_bytes // 4,
                   baseline_lines=max(1, lines // 2), baseline_bytes=max(1, size // 3))


def window_for(alert: Alert, *, before_s: int, after_s: int, baseline_s: int) -> Window:
    """The window around ``alert.starts_at`` and the baseline right before it."""
    at = alert.starts_at
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    at = at.astimezone(UTC)
    start = at - timedelta(seconds=before_s)
    return Window(start=start, end=at + timedelta(seconds=after_s),
                  baseline_start=start - timedelta(seconds=baseline_s))


def label_filters(alert: Alert, *, label_fields: dict[str, str]) -> dict[str, list[str]]:
    """Log field -> accepted values, from the alert labels the label map knows.

    Two labels mapped to one field (``service`` and ``job`` -> ``service.name``) accept
    either value; different fields must all match.
    """
    out: dict[str, list[str]] = {}
    for label, field in label_fields.items():
        value = alert.labels.get(label)
        if value:
            values = out.setdefault(field, [])
            if value not in values:
                values.append(value)
    return out


def field_map(settings: Settings) -> dict[str, str]:
    """The effective field map: ECS defaults overridden by ``HOTWASH_ES_FIELDS``."""
    return {**DEFAULT_FIELDS, **settings.es_fields}


def get_field(record: dict[str, Any], path: str) -> Any:
    """Value at a dotted ECS path in nested objects, or under a flattened dotted key."""
    if path in record:
        return record[path]
    node: Any = record
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        if part in node:
            node = node[part]
        else:
            return node.get(".".join(parts[i:]))
    return node


def parse_timestamp(value: Any) -> datetime | None:
    """ISO-8601 text (Z, offsets, comma fractions) or epoch milliseconds -> aware UTC;
    a time without an offset is taken as UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if not isinstance(value, str):
        return None
    try:
        # Python 3.11 reads Z, offsets, comma fractions and nanoseconds (truncated).
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def scalar(value: Any) -> str | None:
    """A field value as text (first element of a list)."""
    if value is None:
        return None
    if isinstance(value, list):
        return scalar(value[0]) if value else None
    return str(value)


def record_to_line(record: dict[str, Any], fields: dict[str, str]) -> LogLine | None:
    """An ECS log record -> LogLine (None without a timestamp)."""
    ts = parse_timestamp(get_field(record, fields["timestamp"]))
    if ts is None:
        return None
    message = scalar(get_field(record, fields["message"])) or ""
    error_message = scalar(get_field(record, fields["error_message"]))
    if error_message and error_message not in message:
        message = f"{message} {error_message}".strip()
    return LogLine(
        timestamp=ts, message=message,
        level=scalar(get_field(record, fields["level"])),
        service=scalar(get_field(record, fields["service"])),
        trace_id=scalar(get_field(record, fields["trace_id"])),
        host=scalar(get_field(record, fields["host"])),
        pod=scalar(get_field(record, fields["pod"])),
        error_type=scalar(get_field(record, fields["error_type"])),
    )


def record_to_span(record: dict[str, Any]) -> Span | None:
    """An ECS APM span/transaction -> Span (None when the record is not one)."""
    trace_id = scalar(get_field(record, SPAN_FIELDS["trace_id"]))
    span_name = scalar(get_field(record, SPAN_FIELDS["span"]))
    transaction = scalar(get_field(record, SPAN_FIELDS["transaction"]))
    if not trace_id or not (span_name or transaction):
        return None
    duration_ns = get_field(record, SPAN_FIELDS["duration"])
    if isinstance(duration_ns, int | float):
        duration_us = float(duration_ns) / 1000
    else:
        raw = (get_field(record, SPAN_FIELDS["span_duration_us"])
               or get_field(record, SPAN_FIELDS["transaction_duration_us"]))
        if not isinstance(raw, int | float):
            return None
        duration_us = float(raw)
    return Span(
        trace_id=trace_id, name=span_name or transaction or "?",
        service=scalar(get_field(record, SPAN_FIELDS["service"])),
        transaction=transaction, duration_us=duration_us,
        outcome=scalar(get_field(record, SPAN_FIELDS["outcome"])),
        timestamp=parse_timestamp(get_field(record, SPAN_FIELDS["timestamp"])),
    )


def build_log_source(settings: Settings) -> LogSource:
    """Elasticsearch when ``es_hosts`` is set, else the file source over ``log_files``."""
    redactor = build_redactor(settings)
    if settings.es_hosts:
        from elasticsearch import Elasticsearch

        from bot.adapters.elasticsearch import ElasticsearchLogSource

        auth: dict[str, object] = {}
        if settings.es_ca_certs is not None:
            auth["ca_certs"] = str(settings.es_ca_certs)
        if settings.es_api_key is not None:
            auth["api_key"] = settings.es_api_key.get_secret_value()
        elif settings.es_username and settings.es_password is not None:
            auth["basic_auth"] = (settings.es_username, settings.es_password.get_secret_value())
        client = Elasticsearch(
            settings.es_hosts,
            verify_certs=settings.es_verify_certs,
            request_timeout=settings.es_timeout_s,
            # One retry on 429/502/503/504: an alert should not wait on a struggling cluster.
            max_retries=1,
            retry_on_timeout=False,
            **auth,  # type: ignore[arg-type]
        )
        return ElasticsearchLogSource(client=client, settings=settings, redactor=redactor)
    from bot.adapters.logfiles import FileLogSource

    return FileLogSource(paths=settings.log_files, settings=settings, redactor=redactor)
