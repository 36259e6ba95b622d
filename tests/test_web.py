"""Webhooks and health over real HTTP (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain import DraftStatus
from tests.slack_harness import ALERT_CHANNEL, Harness, eventually, running


@pytest.fixture
def hw(tmp_path: Path) -> Iterator[Harness]:
    with running(tmp_path) as harness:
        yield harness


@pytest.fixture
def alertmanager_body(repo_root: Path) -> bytes:
    return (repo_root / "samples/alerts/checkout-5xx.json").read_bytes()


def test_webhook_needs_the_bearer_token(hw: Harness, alertmanager_body: bytes) -> None:
    assert hw.webhook("alertmanager", alertmanager_body, token=None).status_code == 401
    wrong = hw.webhook("alertmanager", alertmanager_body, token="guess")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "missing or wrong bearer token"
    assert hw.received_count() == 0


def test_alertmanager_webhook_is_persisted_grouped_and_drafted(
        hw: Harness, alertmanager_body: bytes) -> None:
    response = hw.webhook("alertmanager", alertmanager_body)
    assert response.status_code == 202
    body = response.json()
    assert body["incidents"] == [{"id": 1, "alert": "CheckoutHighErrorRate", "new": True}]
    row = hw.store.get_received(received_id=body["received_id"])
    assert row.body == alertmanager_body  # verbatim
    assert row.source == "alertmanager"
    assert "authorization" not in {k.lower() for k in row.headers}

    # No Slack message came with a webhook: Hotwash opens the thread in the alert channel.
    root = hw.fake.wait_for("chat.postMessage", where=lambda c: not c.args.get("thread_ts"))[0]
    assert root.args["channel"] == ALERT_CHANNEL
    assert "CheckoutHighErrorRate" in root.args["text"]
    working = hw.fake.wait_for("chat.postMessage", count=2)[1]
    assert working.args["thread_ts"] == hw.fake.messages[ALERT_CHANNEL][0]["ts"]
    hw.fake.wait_for("chat.update")
    incident = eventually(lambda: hw.store.get_incident(incident_id=1).thread_ts and
                          hw.store.get_incident(incident_id=1))
    assert incident.channel == ALERT_CHANNEL

    # The same alert again (Alertmanager repeats every repeat_interval): same incident.
    again = hw.webhook("alertmanager", alertmanager_body)
    assert again.json()["incidents"][0]["new"] is False
    eventually(lambda: hw.store.list_drafts(status=DraftStatus.PENDING))
    assert len(hw.store.list_drafts()) == 1
    assert hw.store.get_incident(incident_id=1).alert_count == 2


def test_resolved_alert_closes_without_a_draft(hw: Harness, alertmanager_body: bytes) -> None:
    data = json.loads(alertmanager_body)
    data["status"] = "resolved"
    for alert in data["alerts"]:
        alert["status"] = "resolved"
    response = hw.webhook("alertmanager", json.dumps(data))
    assert response.status_code == 202
    assert response.json()["resolved"] == ["CheckoutHighErrorRate"]
    assert response.json()["incidents"] == []
    assert hw.store.list_drafts() == []


def test_bad_json_and_wrong_schema_get_a_one_line_4xx_but_are_kept(hw: Harness) -> None:
    bad = hw.webhook("alertmanager", b'{"alerts": [')
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("invalid JSON: ")
    assert "\n" not in bad.json()["error"]
    wrong = hw.webhook("grafana", json.dumps({"hello": "world"}))
    assert wrong.status_code == 422
    assert "alerts" in wrong.json()["error"]
    assert hw.received_count() == 2  # persisted before being judged
    failed = hw.store.get_received(received_id=1)
    assert failed.status == "failed" and failed.error and "invalid JSON" in failed.error
    assert hw.fake.calls_to("chat.postMessage") == []


def test_grafana_legacy_webhook_is_accepted(hw: Harness) -> None:
    body = {"ruleName": "Checkout latency", "state": "alerting", "title": "[Alerting] latency",
            "message": "p99 above 2s", "tags": {"service": "checkout"}}
    response = hw.webhook("grafana", json.dumps(body))
    assert response.status_code == 202
    assert response.json()["incidents"][0]["alert"] == "Checkout latency"


def test_health_and_readiness(hw: Harness) -> None:
    assert hw.http.get("/healthz").json() == {"status": "ok"}
    ready = hw.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["runbooks"].startswith("loaded")


def test_readiness_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    with running(tmp_path) as hw:
        # Point the store at a database that cannot be opened, as after a lost volume.
        from sqlalchemy import create_engine

        good = hw.store.engine
        hw.store.engine = create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
        try:
            ready = hw.http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"].startswith("not ready:")
        finally:
            hw.store.engine.dispose()
            hw.store.engine = good


def test_without_a_bot_token_webhooks_still_store_drafts(tmp_path: Path,
                                                         alertmanager_body: bytes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from bot.audit.store import build_store
    from bot.services import Services
    from bot.settings import Settings
    from bot.slack.app import build_room
    from bot.web import build_web_app
    from tests.slack_harness import WEBHOOK_TOKEN, CheckoutLogs, DemoRunbooks

    settings = Settings(data_dir=tmp_path / "data", webhook_token=WEBHOOK_TOKEN,  # type: ignore[arg-type]
                        alert_channels=["C0ALERTS"], slack_api_url="http://127.0.0.1:9/api/")
    store = build_store(settings)
    services = Services(settings=settings, store=store, runbooks=DemoRunbooks(),
                        logs=CheckoutLogs(), models=[])
    with ThreadPoolExecutor(max_workers=1) as executor:
        room = build_room(services, executor=executor)
        web = build_web_app(services=services, intake=room.intake, bolt_app=None)
        from starlette.testclient import TestClient

        with TestClient(web) as client:
            response = client.post("/webhooks/alertmanager", content=alertmanager_body,
                                   headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
            assert response.status_code == 202
            assert client.post("/slack/events", content=b"{}").status_code == 404
    assert len(store.list_drafts()) == 1  # the executor finished before the with block ended
    store.close()


def test_oversized_webhook_is_refused(hw: Harness) -> None:
    response = hw.webhook("alertmanager", b'{"alerts": []}' + b" " * 5_000_001)
    assert response.status_code == 413
    assert hw.received_count() == 0
