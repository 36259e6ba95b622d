"""`hotwash evidence --alert FILE|-`: table and JSON over the bundled sample logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.fakes.elasticsearch import FakeElasticsearch

runner = CliRunner()


@pytest.fixture
def logs_env(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOTWASH_LOG_FILES", json.dumps([str(repo_root / "samples/logs")]))
    monkeypatch.setenv("COLUMNS", "160")
    return repo_root / "samples" / "alerts" / "checkout-5xx.json"


def test_json_output_cites_the_new_error(logs_env: Path) -> None:
    result = runner.invoke(app, ["evidence", "--alert", str(logs_env), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["alert"] == "CheckoutHighErrorRate"
    assert data["source"].startswith("files:")
    top = data["items"][1]
    assert top["id"] == "E2" and top["is_new"] and top["level"] == "error"
    assert "HikariPool-1 - Connection is not available" in top["text"]
    assert data["redactions"] >= 1
    assert "Sup3rS3cret" not in result.output


def test_table_output_reads_the_alert_from_stdin(logs_env: Path) -> None:
    result = runner.invoke(app, ["evidence", "--alert", "-"], input=logs_env.read_text())
    assert result.exit_code == 0, result.output
    assert "E2" in result.output and "NEW" in result.output
    assert "HikariPool-1" in result.output
    assert "redactions=" in result.output


def test_an_unreadable_alert_exits_2_with_one_line(logs_env: Path) -> None:
    result = runner.invoke(app, ["evidence", "--alert", "missing.json"])
    assert result.exit_code == 2
    assert "cannot read alert" in result.output
    assert "Traceback" not in result.output


def test_an_outage_prints_the_gap_and_the_query(logs_env: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeElasticsearch() as fake:
        fake.fail(503)
        monkeypatch.setenv("HOTWASH_ES_HOSTS", json.dumps([fake.url]))
        result = runner.invoke(app, ["evidence", "--alert", str(logs_env)])
    assert result.exit_code == 0, result.output
    assert "missing" in result.output and "503" in result.output
    assert "POST /logs-*/_search" in result.output
    assert "Traceback" not in result.output
