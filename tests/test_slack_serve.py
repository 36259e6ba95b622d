"""`hotwash serve` as an operator runs it: a real process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, TEAM_ID, FakeSlackAPI
from tests.fakes.slack_socket import FakeSocketModeSlack
from tests.slack_harness import SIGNING_SECRET, sign


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        while True:
            try:
                if http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)


def test_serve_refuses_socket_mode_without_an_app_token() -> None:
    result = CliRunner().invoke(app, ["serve", "--socket"])
    assert result.exit_code == 2
    assert "HOTWASH_SLACK_APP_TOKEN" in result.output + (result.stderr or "")


def test_serve_refuses_http_mode_without_a_signing_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTWASH_SLACK_BOT_TOKEN", BOT_TOKEN)
    result = CliRunner().invoke(app, ["serve", "--http"])
    assert result.exit_code == 2
    assert "HOTWASH_SLACK_SIGNING_SECRET" in result.output + (result.stderr or "")


@pytest.mark.slow
def test_serve_http_answers_slack_and_health_then_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    with FakeSlackAPI() as fake:
        env = {**os.environ, "HOTWASH_DATA_DIR": str(tmp_path / "data"),
               "HOTWASH_SLACK_API_URL": fake.url, "HOTWASH_SLACK_BOT_TOKEN": BOT_TOKEN,
               "HOTWASH_SLACK_SIGNING_SECRET": SIGNING_SECRET, "HOTWASH_HTTP_PORT": str(port),
               "HOTWASH_RUNBOOKS_DIR": str(tmp_path / "runbooks"), "HOTWASH_LOG_JSON": "false"}
        process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--http"],
                                   cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        try:
            _wait_healthy(port, process)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                body = "command=%2Fhotwash&text=help&user_id=U1&channel_id=C1&team_id=T0"
                response = http.post("/slack/events", content=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded", **sign(body)})
                assert response.status_code == 200 and "/hotwash runbook" in response.text
                assert http.get("/readyz").json()["ready"] is True
        finally:
            process.send_signal(signal.SIGINT)
            output = process.communicate(timeout=30)[0].decode()
        assert process.returncode == 0, output
        assert fake.calls_to("auth.test"), "the bot token is checked at start"
        # The scheduled jobs were registered in the shared SQL job store while it ran.
        import sqlalchemy as sa

        engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'hotwash.db'}")
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT id FROM apscheduler_jobs"))
                jobs = {str(row[0]).split(":")[0] for row in rows}
        finally:
            engine.dispose()
        assert {"reindex", "retention"} <= jobs, jobs


@pytest.mark.slow
def test_serve_uses_socket_mode_when_an_app_token_is_set(tmp_path: Path) -> None:
    port = _free_port()
    socket_slack = FakeSocketModeSlack()
    socket_slack.outbox = [{
        "envelope_id": "env-help", "type": "slash_commands", "accepts_response_payload": True,
        "payload": {"command": "/hotwash", "text": "help", "user_id": "U1",
                    "channel_id": "C1", "team_id": TEAM_ID, "trigger_id": "1.2.3"}}]
    try:
        with FakeSlackAPI() as fake:
            fake.socket_mode_url = socket_slack.url
            env = {**os.environ, "HOTWASH_DATA_DIR": str(tmp_path / "data"),
                   "HOTWASH_SLACK_API_URL": fake.url, "HOTWASH_SLACK_BOT_TOKEN": BOT_TOKEN,
                   "HOTWASH_SLACK_APP_TOKEN": APP_TOKEN, "HOTWASH_HTTP_PORT": str(port),
                   "HOTWASH_RUNBOOKS_DIR": str(tmp_path / "runbooks"),
                   "HOTWASH_LOG_JSON": "false"}
            process = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=tmp_path,
                                       env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT)
            try:
                _wait_healthy(port, process)
                deadline = time.monotonic() + 30
                while not socket_slack.acks and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert socket_slack.acks[0]["envelope_id"] == "env-help"
                assert "/hotwash runbook" in str(socket_slack.acks[0]["payload"])
                with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                    # No signing secret in Socket Mode, and no HTTP route for Slack either.
                    assert http.post("/slack/events", content="{}").status_code == 404
            finally:
                process.send_signal(signal.SIGINT)
                output = process.communicate(timeout=30)[0].decode()
            assert process.returncode == 0, output
            assert "Socket Mode connected" in output
    finally:
        socket_slack.close()
