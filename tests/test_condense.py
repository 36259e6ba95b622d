"""Condensing: Drain templates, novelty against the baseline, ranking, budget, redaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.condense import (
    LogLine,
    Span,
    condense,
    group_lines,
    normalize_level,
    volume_from_lines,
)
from bot.domain import EvidenceKind, EvidencePart
from bot.redaction import Redactor
from bot.tokens import count_tokens

T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)


def _lines(start: datetime, n: int, make: object, *, every_s: float = 1.0) -> list[LogLine]:
    assert callable(make)
    return [make(start + timedelta(seconds=i * every_s), i) for i in range(n)]


def _ok(ts: datetime, i: int) -> LogLine:
    return LogLine(timestamp=ts, level="info", service="checkout",
                   message=f"GET /api/v1/cart/{1000 + i} completed status=200 duration={i % 50}ms")


def _pool(ts: datetime, i: int) -> LogLine:
    return LogLine(timestamp=ts, level="ERROR", service="checkout", trace_id=f"{i:032x}",
                   message="HikariPool-1 - Connection is not available, request timed out "
                           "after 30000ms.")


def _slow(ts: datetime, i: int) -> LogLine:
    return LogLine(timestamp=ts, level="warn", service="checkout",
                   message=f"Slow query detected: SELECT * FROM orders took {500 + i}ms")


def _run(window: list[LogLine], baseline: list[LogLine], *, budget: int = 3000,
         spans: tuple[Span, ...] = ()) -> EvidencePart:
    start = T0 - timedelta(minutes=10)
    volume = volume_from_lines(lines=window, baseline=baseline, start=start,
                               end=T0 + timedelta(minutes=10), baseline_s=3600)
    return condense(lines=window, baseline=baseline, volume=volume, redactor=Redactor(),
                    budget_tokens=budget, source="test", spans=spans, window="w")


def test_a_template_absent_from_the_baseline_is_new_and_ranks_first() -> None:
    baseline = _lines(T0 - timedelta(hours=1), 300, _ok) + _lines(T0 - timedelta(hours=1), 20,
                                                                   _slow, every_s=60)
    window = (_lines(T0 - timedelta(minutes=10), 200, _ok) + _lines(T0, 40, _pool)
              + _lines(T0, 3, _slow, every_s=60))
    part = _run(window, baseline)
    assert part.items[0].kind == EvidenceKind.NOTE
    top = part.items[1]
    assert top.kind == EvidenceKind.LOG_TEMPLATE
    assert top.is_new and top.level == "error" and top.count == 40
    assert "Connection is not available" in top.text
    assert top.first_seen == T0 and top.last_seen == T0 + timedelta(seconds=39)
    others = {i.title: i for i in part.items[2:] if i.kind == EvidenceKind.LOG_TEMPLATE}
    assert others and not any(i.is_new for i in others.values())
    ok = next(i for i in others.values() if "cart" in i.title)
    assert ok.count == 200 and ok.attrs["baseline_count"] == 300
    assert part.stats["new_templates"] == 1


def test_ids_are_stable_and_sequential() -> None:
    window = _lines(T0, 50, _ok) + _lines(T0, 5, _pool)
    first = _run(window, _lines(T0 - timedelta(hours=1), 50, _ok))
    second = _run(window, _lines(T0 - timedelta(hours=1), 50, _ok))
    assert [i.id for i in first.items] == [f"E{n}" for n in range(1, len(first.items) + 1)]
    assert [(i.id, i.title) for i in first.items] == [(i.id, i.title) for i in second.items]


def test_same_words_at_error_level_are_a_new_finding() -> None:
    def status(code: int, level: str) -> object:
        return lambda ts, i: LogLine(
            timestamp=ts, level=level, service="checkout",
            message=f"POST /api/v1/checkout done status={code} duration={i}ms")

    baseline = _lines(T0 - timedelta(hours=1), 100, status(200, "info"))
    window = _lines(T0, 100, status(200, "info")) + _lines(T0, 10, status(503, "error"))
    part = _run(window, baseline)
    errors = [i for i in part.items if i.level == "error"]
    assert len(errors) == 1 and errors[0].is_new and errors[0].count == 10
    assert "status=503" in errors[0].text


def test_without_baseline_nothing_claims_novelty() -> None:
    part = _run(_lines(T0, 50, _ok) + _lines(T0, 5, _pool), [])
    assert not any(i.is_new for i in part.items)
    assert "novelty is unknown" in part.items[0].text


def test_rate_increase_against_the_baseline_is_reported() -> None:
    baseline = _lines(T0 - timedelta(hours=1), 6, _slow, every_s=600)  # 6 per hour
    window = _lines(T0 - timedelta(minutes=10), 120, _slow, every_s=10)  # 120 in 20 min
    part = _run(window, baseline + _lines(T0 - timedelta(hours=1), 100, _ok))
    slow = next(i for i in part.items if "Slow query" in i.title)
    assert not slow.is_new
    assert slow.attrs["rate_ratio"] > 50
    assert "vs baseline" in slow.text


def test_budget_is_respected_and_the_best_items_are_kept() -> None:
    many = []
    for n in range(60):
        name = "comp" + chr(97 + n % 26) + chr(97 + n // 26)  # 60 distinct words
        many += _lines(T0, 3, lambda ts, i, name=name: LogLine(
            timestamp=ts, level="info", message=f"{name} reported its phase finished"))
    window = many + _lines(T0, 5, _pool)
    small = _run(window, _lines(T0 - timedelta(hours=1), 10, _ok), budget=400)
    large = _run(window, _lines(T0 - timedelta(hours=1), 10, _ok), budget=20_000)
    assert small.stats["tokens"] <= 400
    assert sum(count_tokens(i.title) + count_tokens(i.text) for i in small.items) <= 400
    assert len(small.items) < len(large.items)
    assert any("HikariPool" in i.title for i in small.items)
    # What does not fit in full is still listed, one line per template, as far as it fits.
    tail = small.items[-1]
    assert tail.title.startswith("Other log templates")
    assert len(tail.text.splitlines()) >= 3
    assert small.stats["omitted"] > 0


def test_examples_and_templates_are_redacted_and_counted() -> None:
    window = [LogLine(timestamp=T0 + timedelta(seconds=i), level="error",
                      message=f"login failed for bob{i}@example.com password=hunter{i}22")
              for i in range(3)]
    part = _run(window, _lines(T0 - timedelta(hours=1), 10, _ok))
    text = part.model_dump_json()
    assert "@example.com" not in text and "hunter" not in text
    assert part.redactions >= 2


def test_spans_are_summarised_as_failing_and_slowest() -> None:
    spans = tuple(
        Span(trace_id=f"t{i}", name="HikariPool.getConnection", service="checkout",
             duration_us=30_000_000, outcome="failure") for i in range(7)
    ) + (Span(trace_id="t9", name="SELECT orders", service="checkout", duration_us=4000,
              outcome="success"),)
    part = _run(_lines(T0, 5, _pool), [], spans=spans)
    traces = [i for i in part.items if i.kind == EvidenceKind.TRACE]
    failing = next(i for i in traces if i.title.startswith("Failing"))
    assert failing.count == 7 and "HikariPool.getConnection: 7/7 failed" in failing.text
    slowest = next(i for i in traces if i.title.startswith("Slowest"))
    assert slowest.text.index("HikariPool") < slowest.text.index("SELECT orders")


def test_summary_counts_errors_over_time() -> None:
    window = _lines(T0 - timedelta(minutes=10), 60, _ok, every_s=10) + _lines(T0, 30, _pool)
    part = _run(window, [])
    summary = part.items[0]
    assert summary.count == 90
    per_bucket = summary.attrs["errors_per_bucket"]
    assert sum(per_bucket) == 30
    assert "First errors in the bucket starting 14:00:00Z" in summary.text


def test_levels_are_normalised() -> None:
    assert [normalize_level(v) for v in ("ERROR", "err", "Warn", "notice", "FATAL", "x")] == [
        "error", "error", "warning", "info", "critical", None]


def test_grouping_separates_templates_and_merges_variables() -> None:
    messages = [f"Accepted connection from 10.0.0.{i} port {4000 + i}" for i in range(5)]
    # (Drain routes on the first tokens: a variable without digits there, like sda/sdb,
    # splits templates. That is a known limit of the algorithm.)
    messages += [f"Disk /dev/sda{i} is {50 + i}% full" for i in range(5)]
    ids = group_lines(messages)
    assert len(set(ids[:5])) == 1 and len(set(ids[5:])) == 1 and ids[0] != ids[5]


def test_token_estimate_is_close_for_log_text() -> None:
    assert count_tokens("") == 0
    assert count_tokens("hello") == 1
    line = "2026-11-28T14:02:11.123Z ERROR HikariPool-1 - Connection is not available"
    # WordPiece (all-MiniLM-L6-v2) gives 26 tokens for this line; the estimate says 33.
    assert 22 <= count_tokens(line) <= 36


def test_a_new_quiet_line_just_before_the_first_new_error_is_ranked_up() -> None:
    def once(message: str, at: datetime) -> LogLine:
        return LogLine(timestamp=at, level="info", service="checkout", message=message)

    baseline = _lines(T0 - timedelta(hours=1), 300, _ok)
    window = _lines(T0 - timedelta(minutes=10), 300, _ok, every_s=2) + _lines(T0, 40, _pool)
    window += [once("Starting checkout v2.14.0 with profile prod", T0 - timedelta(minutes=2)),
               once("Cache warmed with extra entries for pricing", T0 + timedelta(minutes=5)),
               once("Nightly report job scheduled at midnight", T0 - timedelta(minutes=15))]
    part = _run(window, baseline)
    order = [i.title for i in part.items]
    deploy = next(i for i in part.items if "Starting checkout" in i.title)
    assert "just before the first new error" in deploy.text
    after = next(i for i in part.items if "Cache warmed" in i.title)
    assert "just before" not in after.text
    assert order.index(deploy.title) < order.index(after.title)
