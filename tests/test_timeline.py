"""Timeline assembly from a recorded incident thread served by the fake Slack API (real
WebClient, cursor pagination, a 429 honoured) merged with what the audit store holds."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.approval import Approvers, approve
from bot.audit.store import AuditStore
from bot.domain import Alert, Draft, DraftKind
from bot.timeline import EntryKind, Timeline, build_timeline
from tests.fakes.slack_api import BOT_TOKEN, FakeSlackAPI

FIXTURE = Path(__file__).parent / "fixtures" / "slack" / "checkout_incident_thread.json"
T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)


def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlackAPI, WebClient, dict[str, Any]]]:
    thread = recorded()
    with FakeSlackAPI() as fake:
        fake.messages[thread["channel"]].extend(copy.deepcopy(thread["messages"]))
        yield fake, WebClient(base_url=fake.url, token=BOT_TOKEN), thread


def kinds(timeline: Timeline) -> list[str]:
    return [e.kind.value for e in timeline.entries]


def test_thread_is_paginated_filtered_and_numbered(
        slack: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    fake, client, thread = slack
    fake.inject("conversations.replies", status=429, retry_after=1)  # first page rate-limited

    timeline = build_timeline(slack=client, channel=thread["channel"],
                              thread_ts=thread["thread_ts"], page_limit=4)

    # 15 messages, 4 per page -> 4 pages, plus the one 429 that was retried.
    calls = fake.calls_to("conversations.replies")
    assert len(calls) == 5 and timeline.slack_calls == 4
    assert calls[1].at - calls[0].at >= 1.0  # Retry-After: 1 was honoured
    assert [c.args.get("cursor") for c in calls[1:]] == [None, "4", "8", "12"]

    assert [e.id for e in timeline.entries] == [f"T{i}" for i in range(1, 10)]
    assert kinds(timeline) == ["alert", "message", "message", "message", "message",
                               "message", "resolution", "resolution", "message"]
    # Dropped: Hotwash's own draft post, a join, an empty message, the Jira bot's chatter,
    # an edit event and a leave.
    assert timeline.noise == 6
    by_id = timeline.by_id()
    assert by_id["T1"].author == "Alertmanager"
    assert "[FIRING:1] CheckoutHighErrorRate" in by_id["T1"].text
    assert by_id["T1"].at == T0
    assert (by_id["T3"].author, by_id["T3"].at) == ("U0BOB", datetime(2026, 11, 28, 14, 2, 40,
                                                                      tzinfo=UTC))
    assert "HikariPool-1 - Connection is not available" in by_id["T3"].text
    assert by_id["T7"].text.startswith("Resolved: checkout error rate")
    assert by_id["T8"].author == "Alertmanager" and "[RESOLVED]" in by_id["T8"].text
    assert by_id["T9"].text == "thanks all :pray:"  # a broadcast reply is a human message
    assert all("Jira" not in e.author and "SHOP-4312" not in e.text for e in timeline.entries)
    assert timeline.gaps == ()


def test_ids_are_stable_and_later_messages_do_not_renumber(
        slack: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    fake, client, thread = slack
    first = build_timeline(slack=client, channel=thread["channel"],
                           thread_ts=thread["thread_ts"])
    again = build_timeline(slack=client, channel=thread["channel"],
                           thread_ts=thread["thread_ts"])
    assert first.entries == again.entries
    fake.messages[thread["channel"]].append(
        {"type": "message", "user": "U0ALICE", "text": "Postmortem doc to follow",
         "ts": "1795875600.000000", "thread_ts": thread["thread_ts"]})
    later = build_timeline(slack=client, channel=thread["channel"],
                           thread_ts=thread["thread_ts"])
    assert later.entries[:len(first.entries)] == first.entries
    assert later.entries[-1].id == "T10" and later.entries[-1].author == "U0ALICE"


class FakeClock:
    def __init__(self) -> None:
        self.moment = T0

    def now(self) -> datetime:
        return self.moment


def seed_incident(store: AuditStore, *, channel: str, thread_ts: str) -> int:
    clock = FakeClock()
    store.clock = clock
    firing = Alert.model_validate({
        "name": "CheckoutHighErrorRate", "fingerprint": "fp-checkout", "severity": "critical",
        "labels": {"service": "checkout", "namespace": "shop", "severity": "critical"},
        "summary": "checkout 5xx ratio above 5%", "starts_at": T0, "channel": channel})
    incident, _ = store.open_incident(alert=firing, window_s=3600)
    store.set_incident_thread(incident_id=incident.id, channel=channel, thread_ts=thread_ts)
    draft = store.save_draft(draft=Draft(
        kind=DraftKind.TRIAGE, incident_id=incident.id, model="evidence-only",
        content={"summary": "DB connection pool exhausted after deploy v2.14.0"},
        markdown="## Triage\nPool exhausted [E1]",
        created_at=datetime(2026, 11, 28, 14, 0, 20, tzinfo=UTC)))
    clock.moment = datetime(2026, 11, 28, 14, 3, tzinfo=UTC)
    approve(store=store, draft_id=draft.id or 0, actor="U0ALICE",
            approvers=Approvers(user_ids=frozenset({"U0ALICE"})))
    clock.moment = datetime(2026, 11, 28, 14, 15, 5, tzinfo=UTC)
    resolved = firing.model_copy(update={"status": "resolved",
                                         "ends_at": datetime(2026, 11, 28, 14, 15, 5,
                                                             tzinfo=UTC)})
    store.open_incident(alert=resolved, window_s=3600)
    return incident.id


def test_store_and_thread_merge_into_one_timeline(
        store: AuditStore, slack: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    fake, client, thread = slack
    incident_id = seed_incident(store, channel=thread["channel"], thread_ts=thread["thread_ts"])

    timeline = build_timeline(store=store, incident_id=incident_id, slack=client)

    assert (timeline.channel, timeline.thread_ts) == (thread["channel"], thread["thread_ts"])
    assert [(e.kind.value, e.source.split(":")[0]) for e in timeline.entries] == [
        ("alert", "alert"),        # 14:00:00 from the store, not the bot's Slack copy
        ("draft", "draft"),        # 14:00:20 triage draft #1
        ("message", "slack"),      # 14:01:35 Alice
        ("message", "slack"),      # 14:02:40 Bob (Hikari)
        ("decision", "decision"),  # 14:03:00 Alice approved draft #1
        ("message", "slack"),      # 14:05:00 Carol
        ("message", "slack"),      # 14:07:00 rollback
        ("message", "slack"),      # 14:10:00 rollback complete
        ("resolution", "slack"),   # 14:15:00 "Resolved: ..."
        ("resolution", "alert"),   # 14:15:05 the alert resolved (store)
        ("message", "slack"),      # 14:16:00 thanks
    ]
    decision = timeline.entries[4]
    assert decision.author == "U0ALICE" and decision.text == "approved triage draft #1"
    assert "DB connection pool exhausted" in timeline.entries[1].text
    assert timeline.noise == 8  # 6 noise + the alert bot's two copies of stored alerts
    md = timeline.markdown()
    assert md.splitlines()[0] == "| Id | Time (UTC) | Kind | Who | What |"
    assert "| T5 | 2026-11-28 14:03:00 | decision | U0ALICE |" in md
    evidence = timeline.evidence()
    assert [item.id for item in evidence] == [e.id for e in timeline.entries]


def test_incident_channel_history_includes_thread_replies() -> None:
    with FakeSlackAPI() as fake:
        client = WebClient(base_url=fake.url, token=BOT_TOKEN)
        c = "C0INC42"
        fake.add_message(c, text="<@U0ZED> has joined the channel", user="U0ZED",
                         subtype="channel_join")
        top = fake.add_message(c, text="Declaring SEV2 for checkout 5xx", user="U0ALICE",
                               reply_count=2)
        fake.add_message(c, text="DB pool at 20/20", user="U0BOB", thread_ts=top["ts"])
        fake.add_message(c, text="mitigated by rollback", user="U0BOB", thread_ts=top["ts"])
        top["thread_ts"] = top["ts"]
        fake.add_message(c, text="Status page updated", user="U0CAROL")
        timeline = build_timeline(slack=client, channel=c, page_limit=2)
    assert [(e.author, e.kind) for e in timeline.entries] == [
        ("U0ALICE", EntryKind.MESSAGE), ("U0BOB", EntryKind.MESSAGE),
        ("U0BOB", EntryKind.RESOLUTION), ("U0CAROL", EntryKind.MESSAGE)]
    assert timeline.noise == 1
    assert fake.calls_to("conversations.history") and fake.calls_to("conversations.replies")


def test_slack_failure_is_a_gap_not_a_crash(
        store: AuditStore, slack: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    fake, client, thread = slack
    incident_id = seed_incident(store, channel=thread["channel"], thread_ts=thread["thread_ts"])
    fake.inject("conversations.replies", status=200, error="not_in_channel", retry_after=None)

    timeline = build_timeline(store=store, incident_id=incident_id, slack=client)

    assert timeline.gaps == (f"Slack conversations.replies {thread['channel']} "
                             f"{thread['thread_ts']} failed: not_in_channel",)
    assert kinds(timeline) == ["alert", "draft", "decision", "resolution"]
