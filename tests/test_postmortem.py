"""Postmortem drafts: evidence-only and with a (fake, over HTTP) model, grounding per
section, stored pending, approved with per-section edit counts in the audit log, exported."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.approval import Approvers, reject
from bot.audit.store import AuditStore
from bot.domain import DraftKind, DraftStatus
from bot.llm import build_chat_models
from bot.postmortem import (
    SECTIONS,
    NotApproved,
    approve_postmortem,
    draft_postmortem,
    edit_stats,
    export_markdown,
    fit_entries,
    postmortem,
    postmortem_for_thread,
    section_edits,
    split_sections,
)
from bot.prompts import render
from bot.services import Services
from bot.settings import Settings
from bot.slack.poster import ChannelPacer, SlackPoster
from bot.timeline import EntryKind, TimelineEntry
from tests.fakes.openai_server import INVALID_JSON, FakeOpenAI, Reply
from tests.fakes.slack_api import BOT_TOKEN, FakeSlackAPI
from tests.test_timeline import recorded, seed_incident

APPROVERS = Approvers(user_ids=frozenset({"U0LEAD"}))
HEADINGS = [s.title for s in SECTIONS]


@pytest.fixture
def thread() -> Iterator[tuple[FakeSlackAPI, WebClient, dict[str, Any]]]:
    data = recorded()
    with FakeSlackAPI() as fake:
        fake.messages[data["channel"]].extend(copy.deepcopy(data["messages"]))
        yield fake, WebClient(base_url=fake.url, token=BOT_TOKEN), data


def services_for(store: AuditStore, settings: Settings | None = None) -> Services:
    settings = settings or Settings()
    # Postmortems need the store and the models; retrieval and logs are not wired here.
    return Services(settings=settings, store=store, runbooks=None,  # type: ignore[arg-type]
                    logs=None, models=build_chat_models(settings))  # type: ignore[arg-type]


def headings(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.splitlines() if line.startswith("## ")]


def test_evidence_only_draft_fills_facts_and_asks_the_authors(
        store: AuditStore, thread: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    _, client, data = thread
    incident_id = seed_incident(store, channel=data["channel"], thread_ts=data["thread_ts"])

    draft = draft_postmortem(incident_id=incident_id, services=services_for(store),
                             slack=client)

    assert draft.id is not None and draft.kind is DraftKind.POSTMORTEM
    assert store.get_draft(draft_id=draft.id).status is DraftStatus.PENDING
    assert draft.model == "evidence-only" and draft.grounding_score is None
    assert headings(draft.markdown) == HEADINGS
    sections = split_sections(draft.markdown)
    # Timeline: every entry, cited by its id.
    assert sections["Timeline"].count("\n- ") + 1 == 11
    assert "- 14:02:40 [message] U0BOB: Seeing HikariPool-1" in sections["Timeline"]
    assert sections["Timeline"].rstrip().endswith("[T11]")
    # Impact and Detection: computed facts.
    assert "- First signal at 2026-11-28 14:00:00 UTC" in sections["Impact"]
    assert "- Resolved at 14:15:00 UTC, 15m 00s after the first signal. [T1, T9]" \
        in sections["Impact"]
    assert "- Service: checkout. [T1]" in sections["Impact"]
    assert "- First human response at 14:01:35 UTC, 1m 35s after detection. [T3]" \
        in sections["Detection"]
    assert "- First triage draft at 14:00:20 UTC, 20s after detection. [T2]" \
        in sections["Detection"]
    assert "- First decision on a draft at 14:03:00 UTC, 3m 00s after detection. [T5]" \
        in sections["Detection"]
    # The approved triage is quoted and cited; judgement is left to the authors.
    assert ("- Approved triage: DB connection pool exhausted after deploy v2.14.0 [D1]"
            in sections["Root cause"])
    for title in ("Root cause", "Contributing factors", "What went well", "What went poorly",
                  "Action items"):
        assert "> _For the authors:_" in sections[title], title
    assert "| _(to be written)_ | TBD | TBD | TICKET-? | |" in sections["Action items"]
    assert draft.content["approved_triage"]["approved_by"] == "U0ALICE"
    assert {"T1", "T9", "D1"} <= set(draft.evidence_refs)
    assert [e.type for e in store.events(subject=f"draft:{draft.id}")] == ["draft.created"]


def _replies(data: dict[str, Any]) -> list[Any]:
    """One scripted answer per section, in SECTIONS order."""
    point = {"points": [{"text": "Checkout returned 5xx after deploy v2.14.0 until rollback.",
                         "cites": ["T1", "T7", "T8"]}]}
    return [
        Reply({"points": [
            {"text": "Checkout returned HTTP 5xx for 15 minutes after deploy v2.14.0 "
                     "exhausted the DB connection pool; a rollback fixed it.",
             "cites": ["T1", "D1", "T9"]},
            {"text": "Payments were lost in another region.", "cites": ["T99"]},  # made up
        ]}),
        Reply(point),                                  # impact
        Reply({"points": [{"text": "14:00 alert fired", "cites": ["T1"]},
                          {"text": "14:07 rollback started", "cites": ["T7"]}]}),
        INVALID_JSON,                                  # detection: unusable -> evidence
        Reply({"points": [{"text": "Pool max 20 too small once v2.14.0 doubled queries "
                                   "per request (xoxb-123456789012-abcdefghijkl).",
                           "cites": ["T6", "D1"]}]}),
        Reply(point), Reply(point), Reply(point),
        Reply({"items": [{"action": "Raise pool size and load-test before re-deploying",
                          "owner": "U0ALICE", "due": "2026-12-05", "cites": ["T10"]},
                         {"action": "Page the DBA team", "owner": None, "due": None,
                          "cites": []}]}),
    ]


def test_model_draft_is_grounded_per_section(
        store: AuditStore, thread: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    _, client, data = thread
    incident_id = seed_incident(store, channel=data["channel"], thread_ts=data["thread_ts"])
    with FakeOpenAI() as llm:
        llm.script(*_replies(data))
        settings = Settings(llm_base_url=llm.base_url, llm_model="fake-model",
                            llm_max_retries=0)
        services = services_for(store, settings)
        try:
            draft = draft_postmortem(incident_id=incident_id, services=services, slack=client)
        finally:
            for model in services.models:
                model.close()  # type: ignore[attr-defined]
        requests = llm.chat_requests()

    assert len(requests) == len(SECTIONS)
    system, user = requests[4]["messages"]
    assert "## Safety rules" in system["content"]
    assert '<evidence id="T3" kind="timeline"' in user["content"]
    assert '<evidence id="D1" kind="triage" approved_by="U0ALICE">' in user["content"]
    assert 'the "Root cause" section' in user["content"]
    assert requests[4]["response_format"]["type"] == "json_schema"

    assert draft.model == "fake-model"
    sections = split_sections(draft.markdown)
    assert "[T1, D1, T9]" in sections["Summary"]
    assert "Payments were lost" not in draft.markdown  # its only source does not exist
    assert "- 14:07 rollback started [T7]" in sections["Timeline"]
    assert "[T2]" not in sections["Timeline"]  # key moments replace the full list
    # Detection fell back to the computed facts.
    assert "First human response at 14:01:35 UTC" in sections["Detection"]
    assert draft.content["sections"]["detection"]["author"] == "evidence-only"
    assert "[REDACTED:slack_token]" in sections["Root cause"]
    assert "xoxb-123456789012" not in draft.markdown
    assert ("| Raise pool size and load-test before re-deploying | U0ALICE | 2026-12-05 | "
            "TICKET-? | T10 |") in sections["Action items"]
    assert "Page the DBA team" not in draft.markdown
    assert draft.grounding_score is not None and draft.grounding_score < 1.0
    notes = " ".join(draft.notes)
    assert "Summary: removed citations to entries that do not exist: T99." in notes
    assert "Summary: dropped 1 claim(s) with no valid source." in notes
    assert "Detection: the answer of fake-model was unusable" in notes
    assert draft.prompt_tokens > 0 and draft.completion_tokens > 0


def test_approval_records_edits_per_section_and_export_uses_the_edit(
        store: AuditStore, thread: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    _, client, data = thread
    incident_id = seed_incident(store, channel=data["channel"], thread_ts=data["thread_ts"])
    draft = draft_postmortem(incident_id=incident_id, services=services_for(store),
                             slack=client)
    assert draft.id is not None
    with pytest.raises(NotApproved):
        export_markdown(store=store, draft_id=draft.id)

    # The same triage line opens Summary and Root cause; the approver rewrites the latter.
    head, old, tail = draft.markdown.rpartition(
        "- Approved triage: DB connection pool exhausted after deploy v2.14.0 [D1]")
    edited = (head + "- Pool max 20 was too small once v2.14.0 doubled per-request queries "
              "[T6, D1]" + tail).replace("## What went well\n",
              "## What went well\n\n- Rollback took 3 minutes [T7, T8]\n")
    store.clock = SimpleNamespace(now=lambda: datetime(2026, 11, 28, 15, 0, tzinfo=UTC))
    decision = approve_postmortem(store=store, draft_id=draft.id, actor="U0LEAD",
                                  approvers=APPROVERS, edited_markdown=edited)
    assert decision.edited_markdown == edited

    [event] = [e for e in store.events(subject=f"draft:{draft.id}")
               if e.type == "postmortem.edits"]
    counts = event.payload["sections"]
    assert counts["Root cause"] == 2 and counts["What went well"] == 1
    assert sum(counts.values()) == 3 and event.payload["sections_changed"] == 2

    exported = export_markdown(store=store, draft_id=draft.id)
    assert "Pool max 20 was too small" in exported
    assert "Approved triage: DB connection pool exhausted" in split_sections(exported)["Summary"]
    assert "Approved triage" not in split_sections(exported)["Root cause"]
    assert exported.rstrip().endswith(
        f"_Edited and approved by U0LEAD on 2026-11-28 15:00 UTC · Hotwash draft "
        f"#{draft.id} · evidence-only_")
    export_markdown(store=store, draft_id=draft.id)  # edits are recorded once
    stats = {row.section: row for row in edit_stats(store=store)}
    assert (stats["Root cause"].drafts, stats["Root cause"].edited,
            stats["Root cause"].mean_lines) == (1, 1, 2.0)
    assert (stats["Impact"].edited, stats["Impact"].mean_lines) == (0, 0.0)
    assert [e.type for e in store.events(subject=f"draft:{draft.id}")].count(
        "postmortem.edits") == 1
    assert store.verify().ok


def test_rejected_postmortem_cannot_be_exported(store: AuditStore) -> None:
    with FakeSlackAPI() as fake:
        client = WebClient(base_url=fake.url, token=BOT_TOKEN)
        incident_id = seed_incident(store, channel="C0ALERTS", thread_ts="1795874400.000000")
        draft = draft_postmortem(incident_id=incident_id, services=services_for(store),
                                 slack=client)
    assert draft.id is not None and "thread_not_found" in " ".join(draft.notes)
    reject(store=store, draft_id=draft.id, actor="U0LEAD", reason="wrong incident",
           approvers=APPROVERS)
    with pytest.raises(NotApproved, match="rejected"):
        export_markdown(store=store, draft_id=draft.id)


def test_section_edit_counts() -> None:
    original = "# P\n\n## Summary\n\n- a\n- b\n\n## Impact\n\n- c\n"
    assert section_edits(original, original)["Summary"] == 0
    edited = "# P\n\n## Summary\n\n- a\n- B\n\n## Extra\n\n- new\n"
    counts = section_edits(original, edited)
    assert (counts["Summary"], counts["Impact"], counts["Extra"]) == (2, 1, 1)


def test_a_thread_hotwash_never_saw_is_drafted_from_the_conversation(
        store: AuditStore, thread: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    _, client, data = thread
    draft = postmortem_for_thread(channel=data["channel"], thread_ts=data["thread_ts"],
                                  services=services_for(store), slack=client)
    assert draft.incident_id is None
    assert draft.content["title"].startswith("[FIRING:1] CheckoutHighErrorRate")
    sections = split_sections(draft.markdown)
    assert "- Resolved at 14:15:00 UTC, 15m 00s after the first signal. [T1, T7]" \
        in sections["Impact"]


def test_slash_command_posts_the_draft_in_the_incident_thread(
        store: AuditStore, thread: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    fake, client, data = thread
    incident_id = seed_incident(store, channel=data["channel"], thread_ts=data["thread_ts"])
    room = SimpleNamespace(services=services_for(store), client=client, url_base=None,
                           poster=SlackPoster(client=client, pacer=ChannelPacer(interval_s=0)))
    said: list[dict[str, Any]] = []

    draft = postmortem(room=room, command={"channel_id": data["channel"],
                                           "text": f"postmortem {incident_id}"},
                       respond=lambda **kw: said.append(kw))

    [post] = fake.calls_to("chat.postMessage")
    assert post.args["channel"] == data["channel"]
    assert post.args["thread_ts"] == data["thread_ts"]
    blocks = json.loads(post.args["blocks"]) if isinstance(post.args["blocks"], str) \
        else post.args["blocks"]
    assert any(b.get("block_id") == f"draft_actions:{draft.id}" for b in blocks)
    assert said and said[0]["response_type"] == "ephemeral"
    stored = store.get_draft(draft_id=draft.id or 0)
    assert stored.channel == data["channel"] and stored.message_ts  # buttons can update it


def test_budget_keeps_every_event_and_the_first_and_last_messages() -> None:
    t0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
    entries = [TimelineEntry(id="T1", at=t0, kind=EntryKind.ALERT, author="am",
                             text="CheckoutHighErrorRate firing", source="alert:1")]
    entries += [TimelineEntry(id=f"T{i}", at=t0 + timedelta(seconds=i),
                              kind=EntryKind.MESSAGE, author="U0BOB",
                              text=f"message {i} " + "words " * 30, source=f"slack:C1:{i}")
                for i in range(2, 302)]
    entries.append(TimelineEntry(id="T302", at=t0 + timedelta(hours=1),
                                 kind=EntryKind.RESOLUTION, author="U0ALICE", text="resolved",
                                 source="slack:C1:999"))
    kept, left_out = fit_entries(entries, budget_tokens=2000)
    ids = [e.id for e in kept]
    assert ids[0] == "T1" and ids[-1] == "T302"
    assert "T2" in ids and "T301" in ids and left_out > 200
    assert len(kept) == 302 - left_out
    assert ids == sorted(ids, key=lambda i: int(i[1:]))


def test_every_section_has_a_template_with_the_output_format() -> None:
    ctx = {"incident_title": "t", "facts": [], "triage": None, "entries": [], "left_out": 0}
    system = render("postmortem/system.md.j2")
    assert "## Safety rules" in system.text and "Blameless" in system.text
    for section in SECTIONS:
        text = render(section.template, items=section.key == "action_items", **ctx).text
        assert f'the "{section.title}" section' in text
        assert ("`items`" in text) == (section.key == "action_items")
    assert build_chat_models(Settings()) == []


def test_slash_command_says_where_the_draft_is_when_posting_fails(
        store: AuditStore, thread: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    fake, client, data = thread
    seed_incident(store, channel=data["channel"], thread_ts=data["thread_ts"])
    room = SimpleNamespace(services=services_for(store), client=client, url_base=None,
                           poster=SlackPoster(client=client, pacer=ChannelPacer(interval_s=0)))
    fake.inject("chat.postMessage", status=200, error="not_in_channel", retry_after=None)
    said: list[dict[str, Any]] = []

    draft = postmortem(room=room, command={"channel_id": data["channel"], "text": "postmortem"},
                       respond=lambda **kw: said.append(kw))

    assert draft.id is not None and store.get_draft(draft_id=draft.id).message_ts is None
    assert f"draft #{draft.id} is stored but could not be posted here (not_in_channel)" \
        in said[-1]["text"]


def test_approved_postmortem_is_posted_in_the_incident_thread(
        store: AuditStore, thread: tuple[FakeSlackAPI, WebClient, dict[str, Any]]) -> None:
    from bot.postmortem import post_export

    fake, client, data = thread
    incident_id = seed_incident(store, channel=data["channel"], thread_ts=data["thread_ts"])
    draft = draft_postmortem(incident_id=incident_id, services=services_for(store),
                             slack=client)
    poster = SlackPoster(client=client, pacer=ChannelPacer(interval_s=0))
    with pytest.raises(NotApproved):
        post_export(store=store, poster=poster, draft_id=draft.id or 0)
    approve_postmortem(store=store, draft_id=draft.id or 0, actor="U0LEAD",
                       approvers=APPROVERS)

    ts = post_export(store=store, poster=poster, draft_id=draft.id or 0)

    [post] = fake.calls_to("chat.postMessage")
    assert post.args["thread_ts"] == data["thread_ts"] and ts
    blocks = post.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    assert blocks[0]["text"]["text"] == "Postmortem: checkout 5xx ratio above 5%"
    titles = [b["text"]["text"].split("\n", 1)[0] for b in blocks if b["type"] == "section"]
    assert titles == [f"*{t}*" for t in HEADINGS]
    assert "Approved by U0LEAD" in blocks[-1]["elements"][0]["text"]
    assert [e.type for e in store.events(subject=f"draft:{draft.id}")][-1] == \
        "postmortem.posted"
    assert store.verify().ok
