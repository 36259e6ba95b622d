"""`hotwash triage`: the real composition root, settings from the environment, fake model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.audit.store import build_store
from bot.cli import app
from bot.domain import DraftStatus
from bot.settings import Settings
from tests.fakes.openai_server import FakeOpenAI

ALERT = {
    "version": "4", "status": "firing", "receiver": "hotwash",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "CheckoutHighErrorRate", "service": "checkout",
                   "namespace": "shop", "severity": "critical", "job": "checkout"},
        "annotations": {"summary": "checkout is returning HTTP 5xx"},
        "startsAt": "2026-11-28T14:05:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "c0ffee",
    }],
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runbooks folder and a tiny log file: the CLI wires the real adapters."""
    (tmp_path / "rb").mkdir()
    logs = tmp_path / "app.log"
    logs.write_text(
        "2026-11-28T14:01:00Z ERROR checkout HikariPool-1 - Connection is not available\n",
        encoding="utf-8")
    monkeypatch.setenv("HOTWASH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOTWASH_RUNBOOKS_DIR", str(tmp_path / "rb"))
    monkeypatch.setenv("HOTWASH_LOG_FILES", json.dumps([str(logs)]))
    (tmp_path / "alert.json").write_text(json.dumps(ALERT), encoding="utf-8")
    return tmp_path


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(model="fake-model") as server:
        yield server


def _stored(tmp: Path) -> list[object]:
    store = build_store(Settings(data_dir=tmp / "data"))
    try:
        return list(store.list_drafts(status=DraftStatus.PENDING))
    finally:
        store.close()


def test_triage_prints_and_stores_a_model_draft(env: Path, fake: FakeOpenAI,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTWASH_LLM_BASE_URL", fake.base_url)
    monkeypatch.setenv("HOTWASH_LLM_MODEL", "fake-model")
    result = CliRunner().invoke(app, ["triage", "--alert", str(env / "alert.json")])
    assert result.exit_code == 0, result.output
    assert "draft #1" in result.output and "fake-model" in result.output
    assert "grounding" in result.output and "tokens" in result.output
    assert len(fake.chat_requests()) == 1
    assert len(_stored(env)) == 1


def test_triage_json_from_stdin_without_a_model(env: Path) -> None:
    result = CliRunner().invoke(app, ["triage", "--alert", "-", "--json"],
                                input=json.dumps(ALERT))
    assert result.exit_code == 0, result.output
    drafts = json.loads(result.output)
    assert drafts[0]["model"] == "evidence-only" and drafts[0]["id"] == 1
    assert drafts[0]["content"]["author"] == "evidence-only"
    assert drafts[0]["status"] == "pending"


def test_triage_rejects_an_unreadable_payload(env: Path) -> None:
    result = CliRunner().invoke(app, ["triage", "--alert", str(env / "missing.json")])
    assert result.exit_code == 2
    assert _stored(env) == []
