"""bot.metrics: record functions move the right series, labels stay low-cardinality,
and the metrics are served both as an ASGI app and on a standalone port."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bot import metrics
from bot.domain import DraftKind, DraftStatus

# Label names that would carry identifiers or free text; no Hotwash metric may have one.
FORBIDDEN_LABELS = {
    "user", "user_id", "actor", "approver", "channel", "channel_id", "thread_ts", "ts",
    "alert", "alertname", "text", "summary", "description", "fingerprint", "message",
    "incident", "incident_id", "draft_id", "query", "error_message", "team",
}


def scraped() -> dict[str, list[tuple[dict[str, str], float]]]:
    """The exposition text parsed back into samples, as Prometheus would read it."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_model_call_counts_latency_tokens_cost_and_errors() -> None:
    before = {
        "ok": metrics.sample("hotwash_model_requests_total",
                             {"model": "m-metrics", "outcome": "ok"}),
        "prompt": metrics.sample("hotwash_tokens_total", {"model": "m-metrics", "kind": "prompt"}),
        "cost": metrics.sample("hotwash_cost_usd_total", {"model": "m-metrics"}),
        "lat": metrics.sample("hotwash_model_request_seconds_count", {"model": "m-metrics"}),
    }
    metrics.record_model_call(model="m-metrics", seconds=1.5, prompt_tokens=900,
                              completion_tokens=200, cost_usd=0.0021)
    metrics.record_model_call(model="m-metrics", seconds=30.0, error="timeout")

    assert metrics.sample("hotwash_model_requests_total",
                          {"model": "m-metrics", "outcome": "ok"}) == before["ok"] + 1
    assert metrics.sample("hotwash_model_requests_total",
                          {"model": "m-metrics", "outcome": "error"}) >= 1
    assert metrics.sample("hotwash_model_errors_total",
                          {"model": "m-metrics", "kind": "timeout"}) >= 1
    assert metrics.sample("hotwash_tokens_total",
                          {"model": "m-metrics", "kind": "prompt"}) == before["prompt"] + 900
    assert metrics.sample("hotwash_cost_usd_total", {"model": "m-metrics"}) == pytest.approx(
        before["cost"] + 0.0021)
    # Failed requests are timed too: a timeout is the slowest request of all.
    assert metrics.sample("hotwash_model_request_seconds_count",
                          {"model": "m-metrics"}) == before["lat"] + 2


def test_triage_latency_has_the_slo_bucket() -> None:
    le30 = {"path": "evidence_only", "le": "30.0"}
    before = metrics.sample("hotwash_triage_seconds_bucket", le30)
    metrics.record_triage(seconds=12.0, path="evidence_only")
    metrics.record_triage(seconds=45.0, path="evidence_only")
    # One of the two is within the 30 s SLO; the burn-rate rule reads exactly this bucket.
    assert metrics.sample("hotwash_triage_seconds_bucket", le30) == before + 1
    assert metrics.TRIAGE_SLO_SECONDS == 30.0


def test_every_sli_has_a_record_function_that_moves_it() -> None:
    calls = [
        (lambda: metrics.record_alert_received(source="alertmanager"),
         "hotwash_alerts_received_total", {"source": "alertmanager"}),
        (lambda: metrics.record_alert_deduplicated(source="alertmanager"),
         "hotwash_alerts_deduplicated_total", {"source": "alertmanager"}),
        (lambda: metrics.record_stage(stage="retrieval", seconds=0.02),
         "hotwash_stage_seconds_count", {"stage": "retrieval"}),
        (lambda: metrics.record_stage(stage="post", seconds=0.3, ok=False),
         "hotwash_stage_errors_total", {"stage": "post"}),
        (lambda: metrics.record_cache(hit=True), "hotwash_cache_hits_total", {"cache": "draft"}),
        (lambda: metrics.record_cache(hit=False),
         "hotwash_cache_misses_total", {"cache": "draft"}),
        (lambda: metrics.record_fallback(from_model="m1", to_model="evidence-only",
                                         reason="timeout"),
         "hotwash_fallback_steps_total",
         {"from_model": "m1", "to_model": "evidence-only", "reason": "timeout"}),
        (lambda: metrics.record_redactions(where="logs", count=3),
         "hotwash_redactions_total", {"where": "logs"}),
        (lambda: metrics.record_safety_hit(rule="shell_command"),
         "hotwash_safety_filter_hits_total", {"rule": "shell_command"}),
        (lambda: metrics.record_grounding_failure(reason="unknown_ref"),
         "hotwash_grounding_failures_total", {"reason": "unknown_ref"}),
        (lambda: metrics.record_draft(kind=DraftKind.TRIAGE, status=DraftStatus.PENDING),
         "hotwash_drafts_total", {"kind": "triage", "status": "pending"}),
        (lambda: metrics.record_decision(kind="triage", action="edit_approve", seconds=240),
         "hotwash_decisions_total", {"kind": "triage", "action": "edit_approve"}),
        (lambda: metrics.record_decision(kind="triage", action="reject", seconds=90),
         "hotwash_approval_seconds_count", {"kind": "triage", "action": "reject"}),
        (lambda: metrics.record_slack_error(method="chat.postMessage", error="ratelimited",
                                            status=429),
         "hotwash_slack_rate_limited_total", {"method": "chat.postMessage"}),
        (lambda: metrics.record_slack_error(method="chat.update", error="channel_not_found"),
         "hotwash_slack_api_errors_total",
         {"method": "chat.update", "error": "channel_not_found"}),
        (lambda: metrics.record_backend_error(backend="elasticsearch", operation="search"),
         "hotwash_backend_errors_total", {"backend": "elasticsearch", "operation": "search"}),
        (lambda: metrics.record_backend_error(backend="chroma", operation="query"),
         "hotwash_backend_errors_total", {"backend": "chroma", "operation": "query"}),
        (metrics.record_quota_refusal, "hotwash_quota_refusals_total", {}),
    ]
    for call, name, labels in calls:
        before = metrics.sample(name, labels)
        call()
        assert metrics.sample(name, labels) > before, name


def test_redaction_count_is_added_not_just_incremented() -> None:
    before = metrics.sample("hotwash_redactions_total", {"where": "prompt"})
    metrics.record_redactions(where="prompt", count=4)
    metrics.record_redactions(where="prompt", count=0)
    assert metrics.sample("hotwash_redactions_total", {"where": "prompt"}) == before + 4


def test_quota_gauge_and_build_info() -> None:
    metrics.record_quota_use(ratio=0.42)
    assert metrics.sample("hotwash_quota_use_ratio") == pytest.approx(0.42)
    metrics.record_build(version="0.1.0")
    assert metrics.sample("hotwash_build_info", {"version": "0.1.0"}) == 1


def test_no_metric_has_a_label_that_would_hold_ids_or_text() -> None:
    names = set()
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            names |= set(s.labels)
    names.discard("le")
    assert names, "no labelled metric registered"
    assert not names & FORBIDDEN_LABELS, names & FORBIDDEN_LABELS


def test_identifiers_and_free_text_never_become_label_values() -> None:
    alert_text = "checkout 5xx after deploy v2.14.0: HikariPool-1 connection not available"
    user_id, channel_id = "U024BE7LH", "C0123456789"
    metrics.record_alert_received(source=alert_text)
    metrics.record_slack_error(method="chat.postMessage", error=channel_id)
    metrics.record_model_call(model=user_id, seconds=0.1)
    metrics.record_grounding_failure(reason="claim about " + channel_id)
    text = metrics.render().decode()
    for leaked in (alert_text, "HikariPool", user_id, channel_id):
        assert leaked not in text
    assert metrics.sample("hotwash_slack_api_errors_total",
                          {"method": "chat.postMessage", "error": "other"}) >= 1


def test_label_guard_caps_distinct_values_per_label() -> None:
    guard = metrics.LabelGuard(limit=5)
    values = [guard.clean("m", "model", f"model-{i}") for i in range(20)]
    assert values[:5] == [f"model-{i}" for i in range(5)]
    assert set(values[5:]) == {"other"}
    # Values already seen keep working after the cap is reached.
    assert guard.clean("m", "model", "model-3") == "model-3"
    # Each label has its own budget.
    assert guard.clean("m", "kind", "timeout") == "timeout"
    assert guard.clean("m", "kind", "") == "unknown"


def test_unknown_closed_values_become_other_at_run_time() -> None:
    before = metrics.sample("hotwash_stage_seconds_count", {"stage": "other"})
    metrics.record_stage(stage="made-up", seconds=0.1)  # type: ignore[arg-type]
    assert metrics.sample("hotwash_stage_seconds_count", {"stage": "other"}) == before + 1


@pytest.fixture
def pending_source() -> Iterator[None]:
    yield
    metrics.watch_pending_drafts(None)


def test_pending_drafts_are_read_at_scrape_time(pending_source: None) -> None:
    rows = [metrics.PendingDrafts(kind="triage", count=3, oldest_age_s=1800.0)]
    metrics.watch_pending_drafts(lambda: rows)
    got = scraped()
    assert ({"kind": "triage"}, 3.0) in got["hotwash_pending_drafts"]
    assert ({"kind": "postmortem"}, 0.0) in got["hotwash_pending_drafts"]
    assert ({"kind": "triage"}, 1800.0) in got["hotwash_oldest_pending_draft_age_seconds"]
    assert got["hotwash_pending_drafts_up"] == [({}, 1.0)]

    rows[0] = metrics.PendingDrafts(kind="triage", count=0, oldest_age_s=0.0)
    assert ({"kind": "triage"}, 0.0) in scraped()["hotwash_pending_drafts"]


def test_a_failing_pending_query_does_not_break_the_scrape(pending_source: None) -> None:
    def broken() -> list[metrics.PendingDrafts]:
        raise ConnectionError("database is down")

    before = metrics.sample("hotwash_backend_errors_total",
                            {"backend": "database", "operation": "pending_drafts"})
    metrics.watch_pending_drafts(broken)
    got = scraped()
    metrics.watch_pending_drafts(None)  # reading the counter back is itself a collection
    assert got["hotwash_pending_drafts_up"] == [({}, 0.0)]
    assert "hotwash_pending_drafts" not in got
    assert "hotwash_quota_refusals_total" in got  # the rest of the scrape is intact
    assert metrics.sample("hotwash_backend_errors_total",
                          {"backend": "database", "operation": "pending_drafts"}) == before + 1


def test_asgi_app_serves_the_exposition_format() -> None:
    metrics.record_alert_received(source="grafana")
    # No lifespan: the app is mounted under the HTTP server, which owns the lifespan.
    response = TestClient(metrics.metrics_app()).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'hotwash_alerts_received_total{source="grafana"}' in response.text
    # Only Hotwash's registry: the process-global default collectors are not mixed in.
    assert "python_gc_objects_collected_total" not in response.text


def test_standalone_port_serves_and_closes() -> None:
    metrics.record_alert_received(source="slack")
    server = metrics.serve_metrics(host="127.0.0.1", port=0)
    try:
        with httpx.Client() as client:
            response = client.get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()
    assert response.status_code == 200
    assert 'hotwash_alerts_received_total{source="slack"}' in response.text
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.get(f"http://127.0.0.1:{server.port}/metrics")


def test_approval_latency_uses_seconds_between_creation_and_decision() -> None:
    created = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    decided = datetime(2026, 11, 28, 10, 7, tzinfo=UTC)
    labels = {"kind": "postmortem", "action": "approve"}
    before = metrics.sample("hotwash_approval_seconds_sum", labels)
    metrics.record_decision(kind="postmortem", action="approve",
                            seconds=(decided - created).total_seconds())
    assert metrics.sample("hotwash_approval_seconds_sum", labels) == before + 420


def test_triage_path_is_read_from_the_model_and_its_chain() -> None:
    chain = ["primary-m", "secondary-m", "evidence-only"]
    assert metrics.triage_path(model="primary-m", chain=chain) == "model"
    assert metrics.triage_path(model="secondary-m", chain=chain) == "fallback"
    assert metrics.triage_path(model="evidence-only", chain=chain) == "evidence_only"
    assert metrics.triage_path(model="primary-m", chain=None) == "model"


def test_pending_drafts_come_from_the_real_store(pending_source: None, tmp_path: Path) -> None:
    from bot.audit.store import build_store
    from bot.domain import Draft
    from bot.settings import Settings

    class Clock:
        at = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

        def now(self) -> datetime:
            return self.at

    clock = Clock()
    store = build_store(Settings(data_dir=tmp_path / "data"), clock=clock)
    try:
        def draft(minute: int, kind: DraftKind = DraftKind.TRIAGE) -> Draft:
            return Draft(kind=kind, content={}, markdown="x", model="evidence-only",
                         created_at=datetime(2026, 11, 28, 10, minute, tzinfo=UTC))

        first = store.save_draft(draft=draft(0))
        store.save_draft(draft=draft(5))
        store.save_draft(draft=draft(7, DraftKind.POSTMORTEM))
        clock.at = datetime(2026, 11, 28, 10, 20, tzinfo=UTC)
        metrics.watch_pending_drafts(metrics.pending_from_store(store))
        got = scraped()
        assert ({"kind": "triage"}, 2.0) in got["hotwash_pending_drafts"]
        assert ({"kind": "triage"}, 1200.0) in got["hotwash_oldest_pending_draft_age_seconds"]
        assert ({"kind": "postmortem"}, 780.0) in got["hotwash_oldest_pending_draft_age_seconds"]

        from bot.approval import Approvers, approve

        approve(store=store, draft_id=first.id or 0, actor="U0LEAD",
                approvers=Approvers(user_ids=frozenset({"U0LEAD"})))
        got = scraped()
        assert ({"kind": "triage"}, 1.0) in got["hotwash_pending_drafts"]
        assert ({"kind": "triage"}, 900.0) in got["hotwash_oldest_pending_draft_age_seconds"]
    finally:
        store.close()


def test_chroma_server_down_counts_a_backend_error(tmp_path: Path) -> None:
    import socket

    from bot.adapters.chroma import open_runbook_store
    from bot.settings import Settings

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    labels = {"backend": "chroma", "operation": "connect"}
    before = metrics.sample("hotwash_backend_errors_total", labels)
    with pytest.raises(Exception, match="Chroma"):
        open_runbook_store(Settings(data_dir=tmp_path, chroma_host="127.0.0.1",
                                    chroma_port=port), embedder_name="test")
    assert metrics.sample("hotwash_backend_errors_total", labels) == before + 1


def test_backend_call_counts_only_failures() -> None:
    labels = {"backend": "elasticsearch", "operation": "count"}
    before = metrics.sample("hotwash_backend_errors_total", labels)
    with metrics.backend_call(backend="elasticsearch", operation="count"):
        pass
    with pytest.raises(TimeoutError), \
            metrics.backend_call(backend="elasticsearch", operation="count"):
        raise TimeoutError("read timed out")
    assert metrics.sample("hotwash_backend_errors_total", labels) == before + 1


def test_superseded_drafts_are_counted(tmp_path: Path) -> None:
    from bot.audit.store import build_store
    from bot.domain import Draft
    from bot.settings import Settings
    from tests.inmemory import checkout_alert

    store = build_store(Settings(data_dir=tmp_path / "data"))
    try:
        incident, _ = store.open_incident(alert=checkout_alert(), window_s=3600)
        labels = {"kind": "triage", "status": "superseded"}
        before = metrics.sample("hotwash_drafts_total", labels)
        for _ in range(3):
            store.save_draft(draft=Draft(kind=DraftKind.TRIAGE, incident_id=incident.id,
                                         content={}, markdown="x", model="evidence-only"))
        # The second draft supersedes the first, the third the second.
        assert metrics.sample("hotwash_drafts_total", labels) == before + 2
    finally:
        store.close()


def test_quota_use_is_the_busiest_channel_today_from_the_store(tmp_path: Path) -> None:
    from bot.audit.store import build_store
    from bot.domain import Draft
    from bot.settings import Settings

    class Clock:
        at = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)

        def now(self) -> datetime:
            return self.at

    store = build_store(Settings(data_dir=tmp_path / "data"), clock=Clock())
    try:
        def spend(channel: str, tokens: int, day: int = 28) -> None:
            store.save_draft(draft=Draft(
                kind=DraftKind.TRIAGE, content={}, markdown="x", model="m", channel=channel,
                prompt_tokens=tokens, completion_tokens=0,
                created_at=datetime(2026, 11, day, 12, 0, tzinfo=UTC)))

        spend("C0BUSY", 3000)
        spend("C0BUSY", 1000)
        spend("C0QUIET", 500)
        spend("C0BUSY", 90_000, day=27)  # yesterday does not count
        read = metrics.quota_from_store(store, limit=10_000)
        assert read() == pytest.approx(0.4)
        metrics.watch_quota(read)
        try:
            assert ({}, 0.4) in scraped()["hotwash_quota_highest_use_ratio"]
        finally:
            metrics.watch_quota(None)
        assert "hotwash_quota_highest_use_ratio" not in scraped()
    finally:
        store.close()
