"""Elasticsearch log source: logs and APM spans around an alert, via the official client.

Every query is a fixed template filled with the alert window and label values (bool
filter + range + terms); nothing a model writes ever reaches Elasticsearch. Per alert:

1. one aggregation request: totals, counts by level over time (date_histogram), by
   service and errors by service in the window, counts by level in the baseline;
2. the window's lines (``_source`` limited to the mapped fields), one page when small,
   else ``search_after`` over a point in time, stopping at ``log_max_lines`` lines or
   ``log_max_bytes`` bytes; when capped, an error sample is read too so errors are never
   crowded out by chatty INFO lines;
3. baseline lines (half the cap) for novelty;
4. spans of the trace ids found in error lines, from the traces index.

Any failure (unreachable, timeout, 401/403, 404 index_not_found, 429, 503, ...) becomes an
``EvidenceGap`` holding the exact request sent (Kibana Dev Tools form) and the pipeline
carries on with what it has. Works with the 8.x and 9.x clients (the evidence tests pass
under elasticsearch 8.19 and 9.5); use the client major that matches your server: a 9.x
client sends ``compatible-with=9``, which an 8.x server refuses.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import ApiError, Elasticsearch

from bot import metrics
from bot.condense import (
    ERROR_LEVELS,
    LEVEL_ALIASES,
    LogLine,
    LogVolume,
    Span,
    condense,
    error_trace_ids,
    histogram_interval,
    normalize_level,
)
from bot.domain import Alert, EvidenceGap, EvidencePart
from bot.logsource import (
    SPAN_FIELDS,
    Caps,
    ReadCap,
    Window,
    field_map,
    label_filters,
    record_to_line,
    record_to_span,
    window_for,
)
from bot.redaction import Redactor
from bot.settings import Settings

PAGE_SIZE = 5000
PIT_KEEP_ALIVE = "2m"
MAX_TRACE_IDS = 50
MAX_SPANS = 2000


def _error_level_values() -> list[str]:
    """Every spelling of an error level we accept, for the keyword terms filter."""
    names = [raw for raw, level in LEVEL_ALIASES.items() if level in ERROR_LEVELS]
    out: list[str] = []
    for name in names:
        for variant in (name, name.upper(), name.capitalize()):
            if variant not in out:
                out.append(variant)
    return out


@dataclass(frozen=True)
class Budget:
    """The time one collect may still spend in Elasticsearch (HOTWASH_ES_DEADLINE_S)."""

    seconds: float
    ends: float

    @classmethod
    def of(cls, seconds: float) -> Budget:
        return cls(seconds=seconds, ends=time.monotonic() + seconds)

    def left(self) -> float:
        return self.ends - time.monotonic()


class QueryFailed(Exception):
    """One request failed; carries the gap to report."""

    def __init__(self, gap: EvidenceGap) -> None:
        super().__init__(gap.error)
        self.gap = gap


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe_error(exc: Exception, *, index: str, timeout_s: float, hosts: str) -> str:
    """One line an on-call engineer can act on, never a stack trace."""
    if isinstance(exc, ConnectionTimeout):
        return f"Elasticsearch did not answer within {timeout_s:g}s (timeout) at {hosts}"
    if isinstance(exc, TransportConnectionError):
        return f"Elasticsearch unreachable at {hosts}: {_short(str(exc))}"
    if isinstance(exc, ApiError):
        status = exc.meta.status
        kind, reason = _error_parts(exc)
        if status == 401:
            return (f"Elasticsearch refused the credentials (401 {kind}); check "
                    "HOTWASH_ES_API_KEY or HOTWASH_ES_USERNAME/HOTWASH_ES_PASSWORD")
        if status == 403:
            return f"Elasticsearch denied access to {index} (403 {kind}: {_short(reason)})"
        if status == 404:
            return f"index not found: {index} (404 {kind}: {_short(reason)})"
        if status == 429:
            return (f"Elasticsearch is overloaded and rejected the search "
                    f"(429 {kind}); retried once")
        if status == 503:
            return f"Elasticsearch unavailable (503 {kind}: {_short(reason)}); retried once"
        return f"Elasticsearch error {status} {kind}: {_short(reason)}"
    if isinstance(exc, TransportError):
        return f"Elasticsearch transport error at {hosts}: {_short(str(exc))}"
    return f"unexpected error from Elasticsearch: {type(exc).__name__}: {_short(str(exc))}"


def _error_parts(exc: ApiError) -> tuple[str, str]:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("type", exc.message)), str(err.get("reason", ""))
    return str(exc.message), str(body or "")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ElasticsearchLogSource:
    """LogSource over Elasticsearch logs and APM traces (client injected, not built here)."""

    def __init__(self, *, client: Elasticsearch, settings: Settings, redactor: Redactor,
                 page_size: int = PAGE_SIZE) -> None:
        self.client = client
        self.settings = settings
        self.redactor = redactor
        self.fields = field_map(settings)
        self.page_size = page_size
        self.name = f"elasticsearch:{settings.es_log_index}"
        self._hosts = ", ".join(settings.es_hosts) or "?"

    # --- query templates (pure; tests read them) ---------------------------
    def base_filters(self, alert: Alert) -> list[dict[str, Any]]:
        """terms filters from the alert labels via the label-to-field map."""
        filters = label_filters(alert, label_fields=self.settings.es_label_fields)
        return [{"terms": {field: sorted(values)}} for field, values in sorted(filters.items())]

    def _range(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"range": {self.fields["timestamp"]: {
            "gte": _iso(start), "lt": _iso(end), "format": "strict_date_optional_time"}}}

    def volume_query(self, alert: Alert, window: Window) -> dict[str, Any]:
        """Counts by level over time and by service (window), by level (baseline)."""
        ts, level, service = (self.fields["timestamp"], self.fields["level"],
                              self.fields["service"])
        interval = histogram_interval(window.seconds)
        return {
            "size": 0,
            "track_total_hits": True,
            "query": {"bool": {"filter": [self._range(window.baseline_start, window.end),
                                          *self.base_filters(alert)]}},
            "aggs": {
                "window": {
                    "filter": self._range(window.start, window.end),
                    "aggs": {
                        "over_time": {
                            "date_histogram": {
                                "field": ts, "fixed_interval": f"{interval}s",
                                "min_doc_count": 0,
                                "extended_bounds": {
                                    "min": _iso(window.start),
                                    "max": _iso(window.end - timedelta(milliseconds=1)),
                                },
                            },
                            "aggs": {"levels": {"terms": {"field": level, "size": 20}}},
                        },
                        "levels": {"terms": {"field": level, "size": 20}},
                        "services": {"terms": {"field": service, "size": 10}},
                        "errors": {
                            "filter": {"terms": {level: _error_level_values()}},
                            "aggs": {"services": {"terms": {"field": service, "size": 10}}},
                        },
                    },
                },
                "baseline": {
                    "filter": self._range(window.baseline_start, window.start),
                    "aggs": {"levels": {"terms": {"field": level, "size": 20}}},
                },
            },
        }

    def lines_query(self, alert: Alert, start: datetime, end: datetime, *,
                    errors_only: bool = False) -> dict[str, Any]:
        """Lines of one window in time order, only the mapped fields."""
        filters = [self._range(start, end), *self.base_filters(alert)]
        if errors_only:
            filters.append({"terms": {self.fields["level"]: _error_level_values()}})
        return {
            "size": self.page_size,
            "track_total_hits": False,
            "query": {"bool": {"filter": filters}},
            "sort": [{self.fields["timestamp"]: {"order": "asc"}}],
            "_source": sorted(set(self.fields.values())),
        }

    def spans_query(self, trace_ids: list[str], window: Window) -> dict[str, Any]:
        """APM spans and transactions of these traces, slowest first."""
        return {
            "size": MAX_SPANS,
            "track_total_hits": False,
            "query": {"bool": {"filter": [
                {"terms": {SPAN_FIELDS["trace_id"]: trace_ids}},
                self._range(window.start, window.end),
            ]}},
            "sort": [{SPAN_FIELDS["duration"]: {"order": "desc", "unmapped_type": "long"}}],
            "_source": sorted(set(SPAN_FIELDS.values())),
        }

    # --- requests ---------------------------------------------------------
    def _fail(self, exc: Exception | None, *, index: str, request: str,
              operation: str, budget: Budget | None = None) -> QueryFailed:
        metrics.record_backend_error(backend="elasticsearch", operation=operation)
        if budget is not None and budget.left() <= 0:
            error = (f"stopped: the {budget.seconds:g}s allowed for one evidence collect "
                     f"(HOTWASH_ES_DEADLINE_S) ran out at {self._hosts}")
        elif exc is None:
            error = f"unexpected failure at {self._hosts}"
        else:
            error = describe_error(exc, index=index, timeout_s=self.settings.es_timeout_s,
                                   hosts=self._hosts)
        # Host URLs may carry credentials and label values come from outside: the gap is
        # shown in drafts, so it is redacted like everything else that leaves.
        return QueryFailed(EvidenceGap(source=f"elasticsearch:{index}",
                                       error=self.redactor.redact_text(error),
                                       query=self.redactor.redact_text(request)))

    def _client(self, budget: Budget) -> Elasticsearch:
        """The client with a request timeout that never runs past the collect's budget."""
        timeout = min(self.settings.es_timeout_s, max(budget.left(), 0.05))
        return self.client.options(request_timeout=timeout)

    def _search(self, index: str | None, body: dict[str, Any], *,
                label_index: str, budget: Budget) -> dict[str, Any]:
        path = f"/{index}/_search" if index else "/_search"
        request = f"POST {path}\n{json.dumps(body)}"
        if budget.left() <= 0:
            raise self._fail(None, index=label_index, request=request, operation="search",
                             budget=budget)
        try:
            return dict(self._client(budget).search(index=index, body=body))
        except Exception as exc:  # every failure becomes a gap; see describe_error
            raise self._fail(exc, index=label_index, request=request,
                             operation="search", budget=budget) from None

    def _read(self, alert: Alert, start: datetime, end: datetime, *, cap: ReadCap,
              total: int | None, budget: Budget, gaps: list[EvidenceGap],
              errors_only: bool = False) -> list[tuple[str, LogLine]]:
        """(id, line) pairs of one window in time order, within ``cap``.

        One request when the window fits one page (or for the error sample); else
        ``search_after`` over a point in time, closed afterwards. A page that fails (the
        budget ran out, the cluster gave up) keeps the pages already read and adds a gap.
        """
        index = self.settings.es_log_index
        body = self.lines_query(alert, start, end, errors_only=errors_only)
        body["size"] = min(self.page_size, cap.max_lines)
        out: list[tuple[str, LogLine]] = []
        if errors_only or (total is not None and total <= body["size"]):
            hits = self._search(index, body, label_index=index, budget=budget)["hits"]["hits"]
            for hit in hits:
                line = record_to_line(hit.get("_source") or {}, self.fields)
                if line is not None and cap.admit(line):
                    out.append((str(hit["_id"]), line))
            return out
        pit_request = f"POST /{index}/_pit?keep_alive={PIT_KEEP_ALIVE}"
        try:
            pit_id = str(self._client(budget).open_point_in_time(
                index=index, keep_alive=PIT_KEEP_ALIVE)["id"])
        except Exception as exc:
            raise self._fail(exc, index=index, request=pit_request,
                             operation="open_point_in_time", budget=budget) from None
        body["sort"] = [*body["sort"], {"_shard_doc": "asc"}]
        try:
            after: list[Any] | None = None
            while not cap.hit:
                page = {**body, "pit": {"id": pit_id, "keep_alive": PIT_KEEP_ALIVE}}
                if after is not None:
                    page["search_after"] = after
                try:
                    result = self._search(None, page, label_index=index, budget=budget)
                except QueryFailed as failed:
                    if not out:
                        raise
                    gaps.append(failed.gap.model_copy(update={
                        "error": f"{failed.gap.error}; kept the {len(out)} lines read before"}))
                    break
                pit_id = str(result.get("pit_id", pit_id))
                hits = result["hits"]["hits"]
                for hit in hits:
                    line = record_to_line(hit.get("_source") or {}, self.fields)
                    if line is None:
                        continue
                    if not cap.admit(line):
                        break
                    out.append((str(hit["_id"]), line))
                if len(hits) < body["size"]:
                    break
                after = hits[-1]["sort"]
        finally:
            try:
                self.client.options(request_timeout=min(self.settings.es_timeout_s, 2.0)) \
                    .close_point_in_time(id=pit_id)
            except Exception:  # the PIT expires by itself after keep_alive
                pass
        return out

    # --- the port ---------------------------------------------------------
    def collect(self, alert: Alert) -> EvidencePart:
        """Logs and traces around ``alert``, condensed; failures become gaps."""
        s = self.settings
        window = window_for(alert, before_s=s.log_window_before_s,
                            after_s=s.log_window_after_s, baseline_s=s.log_baseline_s)
        caps = Caps.from_settings(s)
        gaps: list[EvidenceGap] = []
        budget = Budget.of(s.es_deadline_s)
        try:
            result = self._search(s.es_log_index, self.volume_query(alert, window),
                                  label_index=s.es_log_index, budget=budget)
            volume, window_total = self._volume(result, window)
            if window_total <= s.log_max_lines:
                cap = ReadCap(s.log_max_lines, caps.window_bytes + caps.error_bytes)
                rows = self._read(alert, window.start, window.end, cap=cap,
                                  total=window_total, budget=budget, gaps=gaps)
                capped, kept = cap.hit or bool(gaps), cap.bytes
            else:
                # Errors first: a capped read of a noisy window may stop before them.
                sample_cap = ReadCap(caps.error_lines, caps.error_bytes)
                rows = self._read(alert, window.start, window.end, cap=sample_cap,
                                  total=None, budget=budget, gaps=gaps, errors_only=True)
                cap = ReadCap(caps.window_lines, caps.window_bytes)
                seen = {doc_id for doc_id, _ in rows}
                try:
                    rows += [r for r in self._read(alert, window.start, window.end, cap=cap,
                                                   total=window_total, budget=budget,
                                                   gaps=gaps) if r[0] not in seen]
                except QueryFailed as failed:  # the error sample is still evidence
                    gaps.append(failed.gap)
                capped, kept = True, cap.bytes + sample_cap.bytes
        except QueryFailed as failed:
            return EvidencePart(gaps=(failed.gap,), stats={"window": window.label()})
        base_cap = ReadCap(caps.baseline_lines, caps.baseline_bytes)
        try:
            base_rows = self._read(alert, window.baseline_start, window.start, cap=base_cap,
                                   total=volume.baseline_total, budget=budget, gaps=gaps)
        except QueryFailed as failed:  # without a baseline nothing is "new", but lines stay
            base_rows = []
            gaps.append(failed.gap)
        lines = sorted((line for _, line in rows), key=lambda ln: ln.timestamp)
        baseline = [line for _, line in base_rows]
        spans: list[Span] = []
        trace_ids = error_trace_ids(lines, limit=MAX_TRACE_IDS)
        if trace_ids:
            try:
                found = self._search(s.es_trace_index, self.spans_query(trace_ids, window),
                                     label_index=s.es_trace_index, budget=budget)
                for hit in found["hits"]["hits"]:
                    span = record_to_span(hit.get("_source") or {})
                    if span is not None:
                        spans.append(span)
            except QueryFailed as failed:
                gaps.append(failed.gap)
        part = condense(lines=lines, baseline=baseline, volume=volume, redactor=self.redactor,
                        budget_tokens=s.log_evidence_tokens, source=self.name, spans=spans,
                        capped=capped, window=window.label())
        stats = {**part.stats, "window_total": window_total,
                 "bytes_kept": kept + base_cap.bytes, "trace_ids": len(trace_ids)}
        return part.model_copy(update={"gaps": tuple(gaps), "stats": stats})

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def _volume(self, result: dict[str, Any], window: Window) -> tuple[LogVolume, int]:
        aggs = result.get("aggregations") or {}
        win = aggs.get("window") or {}
        base = aggs.get("baseline") or {}

        def levels(terms: dict[str, Any]) -> dict[str, int]:
            out: dict[str, int] = {}
            for b in (terms or {}).get("buckets", []):
                key = normalize_level(b["key"]) or "unknown"
                out[key] = out.get(key, 0) + int(b["doc_count"])
            return out

        hist = (win.get("over_time") or {}).get("buckets", [])
        start = (datetime.fromtimestamp(hist[0]["key"] / 1000, UTC) if hist else window.start)
        volume = LogVolume(
            interval_s=histogram_interval(window.seconds), start=start,
            buckets=[levels(b.get("levels", {})) for b in hist],
            services={str(b["key"]): int(b["doc_count"])
                      for b in (win.get("services") or {}).get("buckets", [])},
            error_services={
                str(b["key"]): int(b["doc_count"])
                for b in ((win.get("errors") or {}).get("services") or {}).get("buckets", [])
            },
            levels=levels(win.get("levels", {})),
            total=int(win.get("doc_count", 0)),
            baseline_total=int(base.get("doc_count", 0)),
            baseline_levels=levels(base.get("levels", {})),
            baseline_s=window.baseline_seconds,
        )
        return volume, volume.total
