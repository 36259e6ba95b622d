"""Alert parsing: every payload form a user can send becomes an Alert, or a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.alerts import PayloadError, fingerprint, parse_payload
from bot.domain import AlertSource


def test_alertmanager_v4_sample(repo_root: Path) -> None:
    body = (repo_root / "samples/alerts/checkout-5xx.json").read_bytes()
    [alert] = parse_payload(body, content_type="application/json")
    assert alert.name == "CheckoutHighErrorRate"
    assert alert.source is AlertSource.ALERTMANAGER
    assert alert.labels["service"] == "checkout"
    assert alert.severity == "critical"
    assert alert.summary.startswith("checkout is returning HTTP 5xx")
    assert alert.ends_at is None  # Alertmanager's 0001-01-01 means "not ended"
    assert alert.starts_at.year == 2026 and alert.starts_at.tzinfo is not None
    assert alert.fingerprint == "c0ffee5xx0checkout"
    assert alert.group_key and "CheckoutHighErrorRate" in alert.group_key


def test_alertmanager_multiple_alerts_keep_their_own_labels() -> None:
    body = {
        "version": "4", "status": "firing", "commonLabels": {"alertname": "KubePodCrashLooping"},
        "alerts": [
            {"status": "firing", "labels": {"alertname": "KubePodCrashLooping", "pod": "a-1"},
             "startsAt": "2026-11-28T10:00:00.123456789Z"},
            {"status": "resolved", "labels": {"alertname": "KubePodCrashLooping", "pod": "b-2"},
             "startsAt": "2026-11-28T10:01:00Z", "endsAt": "2026-11-28T10:05:00Z"},
        ],
    }
    first, second = parse_payload(body)
    assert (first.labels["pod"], second.labels["pod"]) == ("a-1", "b-2")
    assert first.starts_at.microsecond == 123456  # nanoseconds truncated, not rejected
    assert second.status == "resolved" and second.ends_at is not None
    assert first.fingerprint != second.fingerprint


def test_grafana_unified_webhook() -> None:
    body = {
        "receiver": "hotwash", "status": "firing", "orgId": 1, "title": "[FIRING:1] DiskFull",
        "message": "disk almost full", "state": "alerting",
        "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db-1"},
                    "annotations": {}, "startsAt": "2026-11-28T10:00:00Z"}],
    }
    [alert] = parse_payload(json.dumps(body))
    assert alert.source is AlertSource.GRAFANA
    assert alert.name == "DiskFull"
    assert alert.summary == "disk almost full"


def test_grafana_legacy_webhook() -> None:
    body = {"ruleName": "High CPU", "state": "alerting", "message": "cpu > 90%",
            "tags": {"severity": "warning"}, "evalMatches": []}
    [alert] = parse_payload(body)
    assert alert.name == "High CPU" and alert.severity == "warning"


def test_slack_alertmanager_notifier_attachment() -> None:
    event = {
        "type": "event_callback",
        "event": {
            "type": "message", "subtype": "bot_message", "channel": "C1", "ts": "1795874800.1",
            "username": "alertmanager",
            "attachments": [{
                "title": "[FIRING:2] KubePodCrashLooping (shop checkout)",
                "text": "*Alert:* Pod is crash looping - `critical`\n"
                        "*Description:* Pod shop/checkout-7d9 is restarting\n*Details:*\n"
                        "• *alertname:* `KubePodCrashLooping`\n• *namespace:* `shop`\n"
                        "• *severity:* `critical`",
            }],
        },
    }
    [alert] = parse_payload(event)
    assert alert.name == "KubePodCrashLooping"
    assert alert.labels["namespace"] == "shop"
    assert alert.severity == "critical"
    # The default template's "*Alert:*" line is the summary, without its severity suffix.
    assert alert.summary == "Pod is crash looping"
    assert alert.description == "Pod shop/checkout-7d9 is restarting"
    assert alert.channel == "C1" and alert.thread_ts == "1795874800.1"


def test_slack_grafana_blocks_and_datadog() -> None:
    grafana = {"type": "message", "channel": "C2", "ts": "1.2", "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text":
         "**Firing**\nLabels:\n - alertname = HighLatency\n - service = api"}}]}
    [alert] = parse_payload(grafana)
    assert alert.name == "HighLatency" and alert.labels["service"] == "api"

    datadog = {"type": "message", "channel": "C2", "ts": "1.3", "username": "Datadog",
               "text": "%%%\nTriggered: [P2] Queue depth high on orders-worker\n%%%"}
    [alert] = parse_payload(datadog)
    assert alert.source is AlertSource.DATADOG
    assert "Queue depth high" in alert.name
    assert alert.severity == "P2"


def test_human_symptom_message(repo_root: Path) -> None:
    [alert] = parse_payload((repo_root / "samples/alerts/slack-symptom.json").read_text())
    assert alert.source is AlertSource.SLACK
    assert "500s" in alert.text
    assert alert.channel == "C0ALERTS"


def test_plain_text_and_repeats_share_a_fingerprint() -> None:
    [a] = parse_payload(b"checkout 5xx at 12:03, error rate 18%")
    [b] = parse_payload(b"checkout 5xx at 12:07, error rate 21%")
    assert a.source is AlertSource.TEXT
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"", None, "empty payload"),
        (b"{not json", "application/json", "invalid JSON"),
        (b"[1, 2]", None, "expected a JSON object"),
        (b'{"alerts": []}', None, "no alerts"),
        (b'{"foo": "bar"}', None, "unrecognised payload"),
        (b'{"alerts": [42]}', None, "alerts[0] is not an object"),
    ],
)
def test_bad_input_gets_a_one_line_reason(body: bytes, content_type: str | None,
                                          reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_payload(body, content_type=content_type)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_fingerprint_ignores_volatile_labels() -> None:
    base = {"alertname": "X", "service": "a"}
    assert fingerprint(name="X", labels=base) == fingerprint(
        name="X", labels={**base, "value": "12.5"})
    assert fingerprint(name="X", labels=base) != fingerprint(
        name="X", labels={**base, "service": "b"})
