"""Both log sources (files and Elasticsearch via the fake server) behind the same tests.

The data is the demo incident in samples/logs: expected numbers are counted from the
files here, never typed in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from bot.domain import Alert, EvidenceKind, EvidencePart
from bot.logsource import build_log_source
from bot.settings import Settings
from tests.fakes.elasticsearch import FakeElasticsearch

ALERT_AT = datetime(2026, 11, 28, 14, 5, tzinfo=UTC)
LABELS = {"alertname": "CheckoutHighErrorRate", "service": "checkout", "namespace": "shop",
          "job": "checkout", "severity": "critical"}
POOL_ERROR = "Connection is not available, request timed out after 30000ms"


def alert(*, at: datetime = ALERT_AT, labels: dict[str, str] | None = None) -> Alert:
    return Alert(name="CheckoutHighErrorRate", labels=LABELS if labels is None else labels,
                 starts_at=at, fingerprint="c0ffee")


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sample(request: pytest.FixtureRequest) -> dict[str, list[dict[str, Any]]]:
    root = Path(__file__).resolve().parents[1] / "samples" / "logs"
    return {"logs": _load(root / "checkout-incident.ndjson"),
            "traces": _load(root / "checkout-traces.ndjson")}


def _in_window(record: dict[str, Any], start: str, end: str) -> bool:
    return start <= record["@timestamp"] < end


Collect = Callable[..., EvidencePart]


@pytest.fixture(scope="module")
def seeded_es(sample: dict[str, list[dict[str, Any]]]) -> Iterator[FakeElasticsearch]:
    """One fake server for the module, seeded through ``_bulk`` with the sample files."""
    with FakeElasticsearch() as fake:
        seeder = Elasticsearch(fake.url)
        try:
            helpers.bulk(seeder, ({"_index": "logs-checkout", "_source": r}
                                  for r in sample["logs"]))
            helpers.bulk(seeder, ({"_index": "traces-apm", "_source": r}
                                  for r in sample["traces"]))
        finally:
            seeder.close()
        yield fake


@pytest.fixture(params=["files", "elasticsearch"])
def collect(request: pytest.FixtureRequest, repo_root: Path,
            sample: dict[str, list[dict[str, Any]]]) -> Iterator[Collect]:
    """collect(alert, **settings) through the source named by the parameter."""
    if request.param == "files":
        def run_files(a: Alert, **overrides: Any) -> EvidencePart:
            settings = Settings(log_files=[repo_root / "samples" / "logs"], **overrides)
            source = build_log_source(settings)
            assert source.name.startswith("files:")
            return source.collect(a)

        yield run_files
        return
    fake: FakeElasticsearch = request.getfixturevalue("seeded_es")

    def run_es(a: Alert, **overrides: Any) -> EvidencePart:
        settings = Settings(es_hosts=[fake.url], **overrides)
        source = build_log_source(settings)
        assert source.name == "elasticsearch:logs-*"
        try:
            return source.collect(a)
        finally:
            source.close()  # type: ignore[attr-defined]

    yield run_es


def test_the_new_pool_error_leads_the_evidence(collect: Collect,
                                                sample: dict[str, list[dict[str, Any]]]) -> None:
    part = collect(alert())
    assert part.gaps == ()
    expected = sum(1 for r in sample["logs"]
                   if _in_window(r, "2026-11-28T13:50", "2026-11-28T14:10")
                   and POOL_ERROR in r["message"])
    top = part.items[1]
    assert top.kind == EvidenceKind.LOG_TEMPLATE and top.is_new and top.level == "error"
    assert POOL_ERROR in top.text and top.count == expected
    assert top.first_seen is not None and top.first_seen >= datetime(2026, 11, 28, 14, 0,
                                                                     tzinfo=UTC)
    assert top.ref  # a trace id to follow
    assert [i.id for i in part.items] == [f"E{n}" for n in range(1, len(part.items) + 1)]


def test_window_and_label_filters_decide_what_is_counted(
        collect: Collect, sample: dict[str, list[dict[str, Any]]]) -> None:
    part = collect(alert())
    in_window = [r for r in sample["logs"]
                 if _in_window(r, "2026-11-28T13:50", "2026-11-28T14:10")]
    checkout = [r for r in in_window if r["service"]["name"] == "checkout"]
    assert len(checkout) < len(in_window)  # the frontend lines are filtered out
    assert part.items[0].count == len(checkout) == part.stats["lines"]
    errors = sum(1 for r in checkout if r["log.level"] == "error")
    assert f"Errors by service: checkout {errors:,}." in part.items[0].text
    baseline = [r for r in sample["logs"] if _in_window(r, "2026-11-28T12:50", "2026-11-28T13:50")
                and r["service"]["name"] == "checkout"]
    assert part.stats["baseline_lines"] == len(baseline)
    assert "frontend" not in part.model_dump_json()


def test_labels_of_another_service_select_its_lines(collect: Collect) -> None:
    part = collect(alert(labels={"service": "frontend", "namespace": "shop"}))
    text = part.model_dump_json()
    assert "healthz" in text and "HikariPool" not in text


def test_before_the_deploy_there_is_nothing_new(collect: Collect) -> None:
    part = collect(alert(at=datetime(2026, 11, 28, 13, 40, tzinfo=UTC)),
                   log_window_before_s=600, log_window_after_s=300, log_baseline_s=1800)
    assert part.gaps == ()
    assert part.stats["lines"] > 50
    assert not any(i.is_new for i in part.items)
    assert not any(i.level == "error" for i in part.items)


@pytest.mark.parametrize("budget", [2500, 50_000])
def test_secrets_in_the_logs_never_leave(collect: Collect, budget: int) -> None:
    # 2500: some secrets sit in the one-line list of other templates; 50k: all in full.
    part = collect(alert(), log_evidence_tokens=budget)
    text = part.model_dump_json()
    for secret in ("Sup3rS3cret-2024", "jane.doe@example.com", "4111 1111 1111 1111",
                   "eyJhbGciOiJIUzI1NiJ9"):
        assert secret not in text
    assert part.redactions >= 4  # password, email, card, bearer JWT
    assert "[REDACTED:" in text
    # The injection line is evidence like any other, kept as data for the safety layer.
    assert "IGNORE PREVIOUS INSTRUCTIONS" in text


def test_spans_of_error_traces_are_summarised(collect: Collect) -> None:
    part = collect(alert(), log_evidence_tokens=50_000)
    traces = [i for i in part.items if i.kind == EvidenceKind.TRACE]
    failing = next(i for i in traces if i.title.startswith("Failing spans"))
    assert "HikariPool.getConnection" in failing.text and failing.count > 0
    assert any(i.title.startswith("Slowest spans") for i in traces)


def test_line_cap_keeps_errors(collect: Collect) -> None:
    # 100 lines would end before 14:00 if read in time order; the errors must still show.
    part = collect(alert(), log_max_lines=100)
    assert part.stats["capped"] is True
    assert part.stats["lines"] <= 100
    assert any(POOL_ERROR in i.text for i in part.items)
    assert "Reading stopped at a cap" in part.items[0].text


def test_byte_cap_bounds_memory(collect: Collect) -> None:
    part = collect(alert(), log_max_bytes=6000)
    assert part.stats["bytes_kept"] <= 6000
    assert part.stats["capped"] is True


def test_without_baseline_novelty_is_unknown(collect: Collect) -> None:
    part = collect(alert(), log_baseline_s=0)
    assert not any(i.is_new for i in part.items)
    assert part.items[1].level == "error"


def test_budget_limits_the_evidence(collect: Collect) -> None:
    small = collect(alert(), log_evidence_tokens=600)
    full = collect(alert())
    assert small.stats["tokens"] <= 600 < full.stats["tokens"]
    assert len(small.items) < len(full.items)
    assert POOL_ERROR in small.items[1].text
