"""bot.telemetry: JSON log lines carrying the correlation id, secrets scrubbed, raw
evidence omitted, stages timed, and one span per stage when tracing is on."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from bot import metrics, telemetry
from bot.settings import Settings

BOT_TOKEN = "xoxb-1111-2222-TESTbotTOKENvalue"
SIGNING = "8f14e45fceea167a5a36dedd4bea2543"
API_KEY = "sk-test-4c1d9e7f0b2a6e5d"
DB_PASSWORD = "pg-pass-Zq81"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Logging configured from Settings holding fixture secrets, into a buffer."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    settings = Settings(
        slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING, llm_api_key=API_KEY,
        database_url=f"postgresql+psycopg://hotwash:{DB_PASSWORD}@db:5432/hotwash",
        log_level="DEBUG",
    )
    buffer = io.StringIO()
    handler = telemetry.configure_logging(settings, stream=buffer)
    yield buffer
    root.removeHandler(handler)
    handler.close()
    root.setLevel(level)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_every_line_is_json_with_the_correlation_id(stream: io.StringIO) -> None:
    log = logging.getLogger("hotwash.test")
    log.info("before any alert")
    with telemetry.correlated() as cid:
        log.info("alert received", extra={"source": "alertmanager"})
        with telemetry.correlated():  # the pipeline joins the web handler's id
            log.warning("evidence gap", extra={"gap_source": "elasticsearch"})
    out = lines(stream)
    assert [line["message"] for line in out] == ["before any alert", "alert received",
                                                  "evidence gap"]
    assert out[0]["correlation_id"] is None
    assert out[1]["correlation_id"] == out[2]["correlation_id"] == cid
    assert out[1]["level"] == "INFO" and out[1]["logger"] == "hotwash.test"
    assert out[1]["source"] == "alertmanager" and "time" in out[1]


def test_each_alert_gets_its_own_id_and_it_follows_work_into_threads(
        stream: io.StringIO) -> None:
    log = logging.getLogger("hotwash.test")

    def work(n: int) -> str | None:
        log.info("worker step", extra={"n": n})
        return telemetry.correlation_id()

    ids = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(2):
            with telemetry.correlated() as cid:
                ids.append(cid)
                assert pool.submit(telemetry.in_context(work), 1).result() == cid
    assert ids[0] != ids[1]
    assert [line["correlation_id"] for line in lines(stream)] == ids
    assert telemetry.correlation_id() is None


def test_explicit_id_wins(stream: io.StringIO) -> None:
    with telemetry.correlated("am-4f2a"):
        logging.getLogger("hotwash.test").info("x")
    assert lines(stream)[0]["correlation_id"] == "am-4f2a"


def test_secrets_never_reach_the_log(stream: io.StringIO) -> None:
    log = logging.getLogger("hotwash.slack")
    log.info("posting with token %s", BOT_TOKEN)
    log.info("connect", extra={"url": f"postgresql+psycopg://hotwash:{DB_PASSWORD}@db/x",
                               "headers": {"Authorization": f"Bearer {API_KEY}"}})
    log.info({"event": "verify", "signing_secret": SIGNING})
    try:
        raise RuntimeError(f"401 from model endpoint with key {API_KEY}")
    except RuntimeError:
        log.exception("model call failed")
    text = stream.getvalue()
    for secret in (BOT_TOKEN, SIGNING, API_KEY, DB_PASSWORD):
        assert secret not in text
    out = lines(stream)
    assert out[0]["message"] == "posting with token [secret]"
    assert out[1]["url"].startswith("postgresql+psycopg://hotwash:")
    assert out[1]["url"].endswith("@db/x")
    assert "RuntimeError" in out[3]["exc_info"]  # the traceback is kept, scrubbed


def test_raw_evidence_fields_are_omitted(stream: io.StringIO) -> None:
    logging.getLogger("hotwash.context").info(
        "evidence gathered",
        extra={"evidence": ["user=alice@example.com card=4111111111111111"],
               "payload": '{"alerts": []}', "items": 7},
    )
    line = lines(stream)[0]
    assert line["evidence"] == telemetry.OMITTED and line["payload"] == telemetry.OMITTED
    assert line["items"] == 7
    assert "alice@example.com" not in stream.getvalue()


def test_project_redactor_is_applied_when_given() -> None:
    def redact(text: str) -> tuple[str, int]:
        return text.replace("alice@example.com", "<email>"), text.count("alice@example.com")

    buffer = io.StringIO()
    handler = telemetry.configure_logging(Settings(), stream=buffer, redact=redact)
    try:
        logging.getLogger("hotwash.test").warning("mail alice@example.com bounced")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert json.loads(buffer.getvalue())["message"] == "mail <email> bounced"


def test_configuring_twice_keeps_one_handler(stream: io.StringIO) -> None:
    buffer = io.StringIO()
    handler = telemetry.configure_logging(Settings(), stream=buffer)
    try:
        logging.getLogger("hotwash.test").info("once")
        assert stream.getvalue() == ""
        assert len(buffer.getvalue().splitlines()) == 1
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_plain_text_mode_still_shows_the_correlation_id() -> None:
    buffer = io.StringIO()
    handler = telemetry.configure_logging(Settings(log_json=False), stream=buffer)
    try:
        with telemetry.correlated("cid-plain"):
            logging.getLogger("hotwash.test").info("hello")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert "[cid-plain] hello" in buffer.getvalue()


def test_model_call_line_names_model_version_and_prompt_hash(stream: io.StringIO) -> None:
    with telemetry.correlated() as cid:
        telemetry.log_model_call(model="qwen2.5-coder", model_version="qwen2.5-coder:0.5b-q4",
                                 prompt_hash="ab12" * 16, prompt_template="triage.j2",
                                 prompt_tokens=812, completion_tokens=120, latency_ms=1834.27)
        telemetry.log_model_call(model="qwen2.5-coder", model_version=None,
                                 prompt_hash="ab12" * 16, error="timeout")
    ok, failed = lines(stream)
    assert ok["correlation_id"] == cid and ok["logger"] == "hotwash.model"
    assert ok["model_version"] == "qwen2.5-coder:0.5b-q4" and ok["prompt_hash"] == "ab12" * 16
    assert ok["prompt_tokens"] == 812 and ok["outcome"] == "ok" and ok["latency_ms"] == 1834.3
    assert failed["level"] == "WARNING" and failed["error"] == "timeout"
    assert failed["model_version"] == "qwen2.5-coder"


def test_stage_times_and_counts_failures(stream: io.StringIO) -> None:
    count = {"stage": "evidence"}
    before = metrics.sample("hotwash_stage_seconds_count", count)
    errors = metrics.sample("hotwash_stage_errors_total", count)
    with telemetry.correlated(), telemetry.stage("evidence") as timer:
        logging.getLogger("hotwash.context").info("inside")
    assert timer.seconds > 0 and not timer.failed
    with telemetry.stage("evidence") as timer:
        timer.fail("elasticsearch timed out")
    with pytest.raises(ValueError), telemetry.stage("evidence"):
        raise ValueError("boom")
    assert metrics.sample("hotwash_stage_seconds_count", count) == before + 3
    assert metrics.sample("hotwash_stage_errors_total", count) == errors + 2
    inside = next(line for line in lines(stream) if line["message"] == "inside")
    assert inside["stage"] == "evidence"


@pytest.fixture
def spans() -> Iterator[Any]:
    # The SDK is the optional `otel` extra (also pulled in by chromadb).
    exporters = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    exporter = exporters.InMemorySpanExporter()
    assert telemetry.configure_tracing(Settings(), exporter=exporter)
    yield exporter
    telemetry.shutdown_tracing()


def test_one_span_per_stage_with_the_correlation_id(
        spans: Any, stream: io.StringIO) -> None:
    with telemetry.correlated("cid-trace"):
        with telemetry.stage("evidence", source="file"):
            logging.getLogger("hotwash.context").info("gathering")
        with telemetry.stage("model") as timer:
            timer.fail("timeout")
    finished = {s.name: s for s in spans.get_finished_spans()}
    # One root span per alert, one child span per stage.
    assert set(finished) == {"hotwash.alert", "hotwash.evidence", "hotwash.model"}
    root = finished["hotwash.alert"]
    assert root.parent is None
    for name in ("hotwash.evidence", "hotwash.model"):
        parent = finished[name].parent
        assert parent is not None and parent.span_id == root.context.span_id
    evidence = finished["hotwash.evidence"]
    assert evidence.attributes is not None
    assert evidence.attributes["hotwash.correlation_id"] == "cid-trace"
    assert evidence.attributes["hotwash.source"] == "file"
    assert finished["hotwash.model"].status.status_code.name == "ERROR"
    line = lines(stream)[0]
    assert line["trace_id"] == f"{evidence.context.trace_id:032x}"


def test_tracing_is_off_without_an_endpoint() -> None:
    assert telemetry.configure_tracing(Settings()) is False
    with telemetry.stage("post") as timer:
        assert timer.span is None


def test_otlp_endpoint_builds_an_exporter_without_connecting() -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    try:
        assert telemetry.configure_tracing(Settings(otlp_endpoint="http://127.0.0.1:4317"))
    finally:
        telemetry.shutdown_tracing()


def test_elapsed_measures_from_receipt() -> None:
    assert telemetry.elapsed() == 0.0
    with telemetry.correlated():
        first = telemetry.elapsed()
        with telemetry.correlated():
            assert telemetry.elapsed() >= first  # nested blocks keep the receipt time
    assert telemetry.elapsed() == 0.0


@contextmanager
def configured(settings: Settings) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()
    handler = telemetry.configure_logging(settings, stream=buffer)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)


def test_http_client_chatter_is_quiet_unless_debugging() -> None:
    with configured(Settings()) as buffer:
        logging.getLogger("httpx").info("HTTP Request: POST http://127.0.0.1/api/chat.update")
        logging.getLogger("httpx").warning("connection pool is full")
    assert [line["message"] for line in lines(buffer)] == ["connection pool is full"]
    with configured(Settings(log_level="DEBUG")) as buffer:
        logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1/healthz")
    assert [line["message"] for line in lines(buffer)] == [
        "HTTP Request: GET http://127.0.0.1/healthz"]


def test_redaction_patterns_apply_to_logs_and_built_ins_stay_on() -> None:
    with configured(Settings(redaction_patterns=[r"ORDER-\d{6}"])) as buffer:
        logging.getLogger("hotwash.test").info("order ORDER-123456 failed with %s", BOT_TOKEN)
    message = lines(buffer)[-1]["message"]
    assert "ORDER-123456" not in message
    # The built-in patterns still catch a Slack token nobody configured.
    assert message.startswith("order ") and BOT_TOKEN not in message
