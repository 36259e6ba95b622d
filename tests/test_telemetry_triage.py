"""One full triage through the HTTP app, observed the way an SRE would observe it.

Real pieces on embedded defaults: the SQLite audit store, the file log source over
samples/logs, the embedded runbook index over runbooks/ (packaged ONNX model), a real
OpenAI client talking HTTP to the fake model server, a real WebClient talking to the fake
Slack Web API. An Alertmanager webhook goes in; then /metrics is scraped and the counters
must have moved, every log line must be JSON carrying the alert's correlation id, and no
secret from the fixtures may appear in the logs or the metrics.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bot import metrics, telemetry
from bot.approval import Approvers, approve
from bot.audit.store import AuditStore, build_store
from bot.llm import OpenAIChatModel
from bot.logsource import build_log_source
from bot.retrieval import build_runbook_index
from bot.services import Services
from bot.settings import Settings
from bot.slack.app import build_room
from bot.slack.poster import ChannelPacer, SlackPoster, build_web_client
from bot.web import build_web_app
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import BOT_TOKEN, FakeSlackAPI
from tests.test_telemetry import configured

pytestmark = pytest.mark.slow  # builds the embedded runbook index with the ONNX model

LLM_KEY = "sk-fixture-3f9c2a7e1d5b"
WEBHOOK_TOKEN = "wh-fixture-7d1e0b9a44"
SIGNING_SECRET = "0123fixture4567signing89abcdef"
PAYLOAD_PASSWORD = "Hunter2-fixture-pw"
SECRETS = (LLM_KEY, WEBHOOK_TOKEN, SIGNING_SECRET, BOT_TOKEN, PAYLOAD_PASSWORD)
CHANNEL = "C0ALERTS1"
APPROVER = "U0APPROVER1"


@dataclass
class Running:
    client: TestClient
    store: AuditStore
    slack: FakeSlackAPI
    model: FakeOpenAI
    logs: io.StringIO
    spans: Any  # an InMemorySpanExporter, or None without the `otel` extra


@pytest.fixture
def running(tmp_path: Path, repo_root: Path) -> Iterator[Running]:
    with FakeSlackAPI() as slack, FakeOpenAI() as model:
        settings = Settings(
            data_dir=tmp_path / "data", log_files=[repo_root / "samples" / "logs"],
            runbooks_dir=repo_root / "runbooks", slack_api_url=slack.url,
            slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET,
            webhook_token=WEBHOOK_TOKEN, llm_base_url=model.base_url, llm_api_key=LLM_KEY,
            llm_model="primary-m", llm_prices={"primary-m": (1.0, 2.0)},
            alert_channels=[CHANNEL], approvers=[APPROVER],
        )  # type: ignore[arg-type]
        buffer = io.StringIO()
        root = logging.getLogger()
        level = root.level
        handler = telemetry.configure_logging(settings, stream=buffer)
        store = build_store(settings)
        chat = OpenAIChatModel(base_url=model.base_url, model="primary-m", api_key=LLM_KEY,
                               timeout_s=10, max_retries=0)
        services = Services(settings=settings, store=store,
                            runbooks=build_runbook_index(settings),
                            logs=build_log_source(settings), models=[chat])
        web_client = build_web_client(settings)
        room = build_room(services, client=web_client,
                          poster=SlackPoster(client=web_client,
                                             pacer=ChannelPacer(interval_s=0)))
        app = build_web_app(services=services, intake=room.intake, bolt_app=None)
        metrics.watch_pending_drafts(metrics.pending_from_store(store))
        spans = None
        try:
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
        except ImportError:
            pass
        else:
            spans = InMemorySpanExporter()
            telemetry.configure_tracing(settings, exporter=spans)
        try:
            yield Running(client=TestClient(app), store=store, slack=slack, model=model,
                          logs=buffer, spans=spans)
        finally:
            telemetry.shutdown_tracing()
            metrics.watch_pending_drafts(None)
            chat.close()
            store.close()
            root.removeHandler(handler)
            handler.close()
            root.setLevel(level)


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def alert_body(repo_root: Path) -> bytes:
    data: dict[str, Any] = json.loads((repo_root / "samples/alerts/checkout-5xx.json").read_text())
    # A secret pasted into an annotation must be redacted before it reaches the model, and
    # must never show up in a log line or a metric.
    data["alerts"][0]["annotations"]["note"] = f"db login password={PAYLOAD_PASSWORD}"
    return json.dumps(data).encode()


def test_a_webhook_triage_moves_the_metrics_and_logs_one_correlation_id(
        running: Running, repo_root: Path) -> None:
    before = scrape(running.client)

    response = running.client.post(
        "/webhooks/alertmanager", content=alert_body(repo_root),
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}",
                 "Content-Type": "application/json"})
    assert response.status_code == 202
    [draft] = running.store.list_drafts()
    assert draft.model == "primary-m" and draft.prompt_hash
    running.slack.wait_for("chat.update")  # the draft replaced the working message

    after = scrape(running.client)

    def moved(name: str, by: float = 1, **labels: str) -> None:
        got = value(after, name, **labels) - value(before, name, **labels)
        # Counters of money add floats: compare with a relative tolerance, not exactly.
        assert got >= by * (1 - 1e-9), f"{name}{labels} moved by {got}"

    moved("hotwash_alerts_received_total", source="alertmanager")
    moved("hotwash_triage_seconds_count", path="model")
    for stage in ("logs", "retrieval", "evidence", "prompt", "model", "grounding", "store",
                  "post"):
        moved("hotwash_stage_seconds_count", stage=stage)
    moved("hotwash_model_requests_total", model="primary-m", outcome="ok")
    moved("hotwash_tokens_total", by=draft.prompt_tokens, model="primary-m", kind="prompt")
    moved("hotwash_cost_usd_total", by=draft.cost_usd, model="primary-m")
    moved("hotwash_cache_misses_total", cache="draft")
    moved("hotwash_drafts_total", kind="triage", status="pending")
    moved("hotwash_redactions_total", where="evidence")
    assert value(after, "hotwash_pending_drafts", kind="triage") == 1
    # The model saw the redacted note, not the password.
    prompt_text = json.dumps(running.model.chat_requests()[0]["messages"])
    assert PAYLOAD_PASSWORD not in prompt_text

    # The same alert again (Alertmanager repeats it): counted as deduplicated, no new draft.
    running.client.post("/webhooks/alertmanager", content=alert_body(repo_root),
                        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
    again = scrape(running.client)
    assert value(again, "hotwash_alerts_deduplicated_total", source="alertmanager") == \
        value(after, "hotwash_alerts_deduplicated_total", source="alertmanager") + 1
    assert value(again, "hotwash_triage_seconds_count", path="model") == \
        value(after, "hotwash_triage_seconds_count", path="model")

    # A human approves: decisions, approval latency, and the pending gauge goes to zero.
    assert draft.id is not None
    approve(store=running.store, draft_id=draft.id, actor=APPROVER,
            approvers=Approvers(user_ids=frozenset({APPROVER})))
    decided = scrape(running.client)
    assert value(decided, "hotwash_decisions_total", kind="triage", action="approve") == \
        value(again, "hotwash_decisions_total", kind="triage", action="approve") + 1
    assert value(decided, "hotwash_approval_seconds_count", kind="triage",
                 action="approve") >= 1
    assert value(decided, "hotwash_pending_drafts", kind="triage") == 0

    # Logs: every line is JSON; the lines of the first webhook share one correlation id.
    lines = [json.loads(line) for line in running.logs.getvalue().splitlines()]
    received = [line for line in lines if line["message"] == "webhook received"]
    model_lines = [line for line in lines if line["logger"] == "hotwash.model"]
    ready = [line for line in lines if line["message"] == "triage draft ready"]
    assert len(received) == 2 and len(model_lines) == 1 and len(ready) == 1
    cid = received[0]["correlation_id"]
    # From the HTTP handler, through the thread pool, into every stage of the triage.
    assert cid and model_lines[0]["correlation_id"] == cid == ready[0]["correlation_id"]
    # Every line between the receipt and the posted draft belongs to this alert (the first
    # webhook is triaged inline: no executor in this room).
    during = lines[lines.index(received[0]):lines.index(ready[0]) + 1]
    assert model_lines[0] in during
    assert {line["correlation_id"] for line in during} == {cid}
    # The repeat is a different alert delivery with an id of its own.
    assert received[1]["correlation_id"] not in (None, cid)
    # Model name, version (as the server reported it) and prompt hash on the model call.
    assert model_lines[0]["model"] == "primary-m"
    assert model_lines[0]["model_version"] == running.model.chat_requests()[0]["model"]
    assert model_lines[0]["prompt_hash"] == draft.prompt_hash
    assert model_lines[0]["prompt_tokens"] == draft.prompt_tokens
    assert ready[0]["draft_id"] == draft.id and ready[0]["path"] == "model"

    # Tracing: one span per stage, all in one trace, each carrying the correlation id.
    if running.spans is not None:
        finished = [s for s in running.spans.get_finished_spans()
                    if (s.attributes or {}).get("hotwash.correlation_id") == cid]
        names = {s.name for s in finished}
        assert {"hotwash.logs", "hotwash.retrieval", "hotwash.evidence", "hotwash.prompt",
                "hotwash.model", "hotwash.grounding", "hotwash.store",
                "hotwash.post"} <= names, names
        assert len({s.context.trace_id for s in finished}) == 1
        evidence = next(s for s in finished if s.name == "hotwash.evidence")
        logs_span = next(s for s in finished if s.name == "hotwash.logs")
        assert logs_span.parent is not None
        assert logs_span.parent.span_id == evidence.context.span_id

    # No fixture secret anywhere in what an operator can read.
    exposed = running.logs.getvalue() + running.client.get("/metrics").text
    for secret in SECRETS:
        assert secret not in exposed, secret


def test_operating_serves_the_metrics_port_and_cleans_up(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", daily_token_quota=1000)
    store = build_store(settings)
    try:
        with telemetry.operating(settings, store=store, metrics_port=0) as server:
            assert server is None  # HTTP mode: /metrics lives on the app port
        import httpx

        with telemetry.operating(settings, store=store, metrics_port=_free_port(),
                                 host="127.0.0.1") as server:
            assert server is not None
            with httpx.Client() as client:
                text = client.get(f"http://127.0.0.1:{server.port}/metrics").text
            assert "hotwash_build_info{version=" in text
            assert 'hotwash_pending_drafts{kind="triage"} 0.0' in text
            assert "hotwash_quota_highest_use_ratio 0.0" in text
        after = metrics.render().decode()
        assert "hotwash_pending_drafts{" not in after
        assert "hotwash_quota_highest_use_ratio" not in after
    finally:
        store.close()


def test_a_bad_tracing_setup_is_one_line_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a machine without the `otel` extra: the import fails.
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(telemetry.TelemetryError, match="HOTWASH_OTLP_ENDPOINT"), \
            telemetry.operating(Settings(otlp_endpoint="http://127.0.0.1:4317")):
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_digest_narrative_model_calls_are_counted_and_logged() -> None:
    from datetime import UTC, datetime

    from bot.digest import DigestStats, narrate

    stats = DigestStats(channel="C0ALERTS1", start=datetime(2026, 11, 28, 14, tzinfo=UTC),
                        end=datetime(2026, 11, 28, 15, tzinfo=UTC), alerts=3, firing=3)
    labels = {"model": "digest-m", "outcome": "ok"}
    before = metrics.sample("hotwash_model_requests_total", labels)
    with FakeOpenAI() as fake, configured_json() as buffer:
        fake.script()  # the default answer
        model = OpenAIChatModel(base_url=fake.base_url, model="digest-m", max_retries=0)
        try:
            assert narrate(stats=stats, models=[model]) is not None
        finally:
            model.close()
    assert metrics.sample("hotwash_model_requests_total", labels) == before + 1
    [line] = [json.loads(x) for x in buffer.getvalue().splitlines()
              if json.loads(x)["logger"] == "hotwash.model"]
    assert line["model"] == "digest-m" and line["prompt_template"] == "digest_narrative"
    assert len(line["prompt_hash"]) == 64 and line["model_version"] == "digest-m"


@contextmanager
def configured_json() -> Iterator[io.StringIO]:
    with configured(Settings()) as buffer:
        yield buffer
