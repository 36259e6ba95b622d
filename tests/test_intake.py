"""The intake road on its own: persist -> parse -> group -> triage -> thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot.alerts import PayloadError
from bot.domain import Alert, Draft, Incident
from bot.services import Services
from tests.slack_harness import ALERT_CHANNEL, Harness, running


@pytest.fixture
def hw(tmp_path: Path) -> Iterator[Harness]:
    with running(tmp_path) as harness:
        yield harness


def _deliver(hw: Harness, event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    received_id = hw.room.intake.persist(source="slack:event", body=body, headers={})
    accepted = hw.room.intake.slack_message(event=event, received_id=received_id)
    for job in accepted.jobs:  # triage runs on the intake's executor
        job.result(timeout=30)
    return accepted


def test_a_flapping_alert_opens_one_incident_and_one_draft(hw: Harness) -> None:
    text = "[FIRING:1] DiskAlmostFull\nalertname: DiskAlmostFull\ninstance: db-1\n"
    results = [_deliver(hw, hw.message(text)) for _ in range(20)]
    assert sum(len(r.new_incidents) for r in results) == 1
    assert len(hw.store.list_drafts()) == 1
    assert hw.store.get_incident(incident_id=1).alert_count == 20
    # Only the first message got a reply thread.
    assert len(hw.fake.calls_to("chat.postMessage")) == 1


def test_different_alerts_get_their_own_drafts_in_their_own_threads(hw: Harness) -> None:
    first = hw.message("[FIRING:1] DiskAlmostFull\nalertname: DiskAlmostFull\n")
    second = hw.message("[FIRING:1] CheckoutHighErrorRate\nservice: checkout\n")
    _deliver(hw, first)
    _deliver(hw, second)
    threads = [c.args["thread_ts"] for c in hw.fake.calls_to("chat.postMessage")]
    assert threads == [first["ts"], second["ts"]]
    assert len(hw.store.list_drafts()) == 2


def test_multiple_concurrent_deliveries_of_one_alert_draft_once(hw: Harness) -> None:
    event = hw.message("[FIRING:1] QueueBacklog\nalertname: QueueBacklog\nqueue: orders\n")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: _deliver(hw, event), range(8)))
    assert sum(len(r.new_incidents) for r in results) == 1
    assert len(hw.store.list_drafts()) == 1


def test_a_message_without_text_is_recorded_as_failed(hw: Harness) -> None:
    event = {"type": "message", "channel": ALERT_CHANNEL, "ts": "1.0001", "text": ""}
    received_id = hw.room.intake.persist(source="slack:event", body=b"{}", headers={})
    with pytest.raises(PayloadError):
        hw.room.intake.slack_message(event=event, received_id=received_id)
    row = hw.store.get_received(received_id=received_id)
    assert row.status == "failed" and row.error


def test_triage_failure_is_said_in_the_thread(tmp_path: Path) -> None:
    def broken(*, alert: Alert, services: Services, incident: Incident | None = None) -> Draft:
        raise RuntimeError("pipeline bug")

    with running(tmp_path, triage=broken) as hw:
        event = hw.message("[FIRING:1] DiskAlmostFull\nalertname: DiskAlmostFull\n")
        _deliver(hw, event)
        update = hw.fake.wait_for("chat.update")[0]
        assert "could not draft a triage for *DiskAlmostFull*" in update.args["text"]
        assert "incident #1" in update.args["text"]


def test_slack_outage_loses_no_draft(hw: Harness) -> None:
    hw.fake.inject("chat.postMessage", status=200, error="channel_not_found", retry_after=None)
    event = hw.message("[FIRING:1] DiskAlmostFull\nalertname: DiskAlmostFull\n")
    result = _deliver(hw, event)
    triaged = result.jobs[0].result()
    assert triaged is not None and triaged.ts is not None  # posted as a new reply instead
    assert len(hw.store.list_drafts()) == 1
    # Working message failed; the draft was posted directly in the thread.
    posts = hw.fake.calls_to("chat.postMessage")
    assert len(posts) == 2 and posts[1].args["thread_ts"] == event["ts"]
    assert hw.fake.calls_to("chat.update") == []


def test_rate_limited_post_is_retried_after_retry_after(hw: Harness) -> None:
    hw.fake.inject("chat.postMessage", status=429, retry_after=1)
    event = hw.message("[FIRING:1] DiskAlmostFull\nalertname: DiskAlmostFull\n")
    _deliver(hw, event)
    posts = hw.fake.calls_to("chat.postMessage")
    assert len(posts) == 2
    assert posts[1].at - posts[0].at >= 0.95  # waited as told
    assert len(hw.fake.calls_to("chat.update")) == 1
