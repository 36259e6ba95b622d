"""`hotwash serve` in Socket Mode as a real process: the standalone metrics port answers,
stderr is JSON lines, and no configured secret is printed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlackAPI
from tests.fakes.slack_socket import FakeSocketModeSlack

WEBHOOK_TOKEN = "wh-serve-fixture-5c2e"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, process: subprocess.Popen[bytes]) -> httpx.Response:
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=5) as http:
        while True:
            try:
                return http.get(url)
            except httpx.TransportError:
                assert process.poll() is None, "serve exited early"
                assert time.monotonic() < deadline, f"{url} never answered"
                time.sleep(0.2)


@pytest.mark.slow
def test_socket_mode_serves_metrics_on_its_own_port_and_logs_json(
        tmp_path: Path, repo_root: Path) -> None:
    http_port, metrics_port = _free_port(), _free_port()
    socket_slack = FakeSocketModeSlack()
    try:
        with FakeSlackAPI() as fake:
            fake.socket_mode_url = socket_slack.url
            env = {**os.environ, "HOTWASH_DATA_DIR": str(tmp_path / "data"),
                   "HOTWASH_SLACK_API_URL": fake.url, "HOTWASH_SLACK_BOT_TOKEN": BOT_TOKEN,
                   "HOTWASH_SLACK_APP_TOKEN": APP_TOKEN, "HOTWASH_HTTP_PORT": str(http_port),
                   "HOTWASH_METRICS_PORT": str(metrics_port),
                   "HOTWASH_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
                   "HOTWASH_RUNBOOKS_DIR": str(tmp_path / "runbooks"),
                   "HOTWASH_LOG_FILES": json.dumps([str(tmp_path / "no-logs")])}
            process = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=tmp_path,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                scraped = _get(f"http://127.0.0.1:{metrics_port}/metrics", process)
                assert scraped.status_code == 200
                assert "hotwash_build_info{version=" in scraped.text
                assert 'hotwash_pending_drafts{kind="triage"} 0.0' in scraped.text
                # An alert through the webhook: counted, and visible on both endpoints.
                body = (repo_root / "samples/alerts/checkout-5xx.json").read_bytes()
                with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
                    accepted = http.post("/webhooks/alertmanager", content=body,
                                         headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
                    assert accepted.status_code == 202
                    on_http = http.get("/metrics").text
                deadline = time.monotonic() + 60
                while True:
                    text = _get(f"http://127.0.0.1:{metrics_port}/metrics", process).text
                    if "hotwash_triage_seconds_count" in text:
                        break
                    assert time.monotonic() < deadline, "the triage never finished"
                    time.sleep(0.3)
                assert 'hotwash_alerts_received_total{source="alertmanager"} 1.0' in text
                assert 'hotwash_alerts_received_total{source="alertmanager"} 1.0' in on_http
            finally:
                process.send_signal(signal.SIGINT)
                stdout, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, stderr.decode()
            assert "Socket Mode connected" in stdout.decode()
    finally:
        socket_slack.close()

    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every stderr line is one JSON object
    received = next(r for r in records if r["message"] == "webhook received")
    ready = next(r for r in records if r["message"] == "triage draft ready")
    assert received["correlation_id"] and received["correlation_id"] == ready["correlation_id"]
    assert any(r["message"] == "metrics on a standalone port" and r["port"] == metrics_port
               for r in records)
    for secret in (BOT_TOKEN, APP_TOKEN, WEBHOOK_TOKEN):
        assert secret not in stderr.decode() and secret not in stdout.decode()
