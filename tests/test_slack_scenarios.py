"""Slack end to end: signed requests through the real HTTP app on 127.0.0.1, a real
WebClient talking to the fake Slack Web API, a real audit store, the real triage pipeline
(evidence-only: no model configured)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain import DecisionAction, DraftStatus
from bot.slack import blocks
from tests.fakes.slack_api import Call
from tests.slack_harness import (
    ALERT_CHANNEL,
    APPROVER,
    STRANGER,
    Harness,
    eventually,
    running,
)

NOTIFIER_TEXT = (
    "[FIRING:1] CheckoutHighErrorRate\n"
    "*Alert:* checkout is returning HTTP 5xx for 18% of requests - `critical`\n"
    "*Details:*\n"
    "  • *alertname:* `CheckoutHighErrorRate`\n"
    "  • *service:* `checkout`\n"
    "  • *namespace:* `shop`\n"
    "  • *severity:* `critical`\n"
)


@pytest.fixture
def hw(tmp_path: Path) -> Iterator[Harness]:
    with running(tmp_path) as harness:
        yield harness


def _in_thread(ts: str) -> object:
    return lambda call: call.args.get("thread_ts") == ts


def _draft_update(hw: Harness, *, count: int = 1) -> list[Call]:
    return hw.fake.wait_for("chat.update", count=count, where=lambda c: any(
        b.get("type") == "actions" for b in c.args.get("blocks") or []))


def _alert_draft(hw: Harness) -> tuple[int, str]:
    """Post the demo alert in the alert channel; return (draft id, draft message ts)."""
    event = hw.message(NOTIFIER_TEXT, subtype="bot_message", bot_id="B0ALERTMANAGER",
                       username="Alertmanager")
    assert hw.event(event, event_id="EvALERT1").status_code == 200
    update = _draft_update(hw)[0]
    actions = [b for b in update.args["blocks"] if b["type"] == "actions"][0]
    return int(actions["elements"][0]["value"]), update.args["ts"]


def test_alert_message_gets_working_reply_then_draft_in_its_thread(hw: Harness) -> None:
    event = hw.message(NOTIFIER_TEXT, subtype="bot_message", bot_id="B0ALERTMANAGER",
                       username="Alertmanager")
    started = time.monotonic()
    response = hw.event(event, event_id="EvALERT1")
    ack_s = time.monotonic() - started
    assert response.status_code == 200
    assert ack_s < 3.0

    working = hw.fake.wait_for("chat.postMessage", where=_in_thread(event["ts"]))[0]
    assert working.args["channel"] == ALERT_CHANNEL
    assert "triaging *CheckoutHighErrorRate*" in working.args["text"]

    update = _draft_update(hw)[0]
    # The working message itself becomes the draft: same ts, edited in place.
    working_ts = hw.fake.messages[ALERT_CHANNEL][-1]["ts"]
    assert update.args["ts"] == working_ts
    text = json.dumps(update.args["blocks"])
    assert "pending approval" in text
    assert "db/connection-pool" in text  # the runbook the evidence pointed at
    labels = [e["text"]["text"] for b in update.args["blocks"] if b["type"] == "actions"
              for e in b["elements"]]
    assert labels == ["Approve", "Edit", "Reject", "Regenerate"]

    drafts = eventually(lambda: [d for d in hw.store.list_drafts() if d.message_ts])
    assert len(hw.store.list_drafts()) == 1 and drafts[0].status is DraftStatus.PENDING
    assert drafts[0].message_ts == working_ts and drafts[0].channel == ALERT_CHANNEL
    incident = hw.store.get_incident(incident_id=drafts[0].incident_id or 0)
    assert incident.thread_ts == event["ts"]
    assert hw.received_count() == 1


def test_retried_and_duplicate_deliveries_make_one_draft(hw: Harness) -> None:
    event = hw.message(NOTIFIER_TEXT, subtype="bot_message", bot_id="B0ALERTMANAGER")
    assert hw.event(event, event_id="EvDUP").status_code == 200
    for retry in (1, 2):
        assert hw.event(event, event_id="EvDUP", retry=retry).status_code == 200
    # The same message delivered again under another event id (Slack does this) joins
    # the same incident: it must not draft again either.
    assert hw.event(event, event_id="EvDUP-other").status_code == 200
    _draft_update(hw)
    time.sleep(0.3)  # give any wrongly started second triage time to show itself
    assert len(hw.store.list_drafts()) == 1
    assert len(hw.fake.calls_to("chat.postMessage")) == 1
    assert hw.received_count() == 2  # retries share the first delivery's row


def test_bad_signature_or_stale_timestamp_is_401_and_nothing_processed(hw: Harness) -> None:
    event = hw.message(NOTIFIER_TEXT)
    assert hw.event(event, event_id="EvBAD", secret="not-the-secret").status_code == 401
    stale = int(time.time()) - 6 * 60
    assert hw.event(event, event_id="EvSTALE", timestamp=stale).status_code == 401
    assert hw.command("help", secret="wrong").status_code == 401
    time.sleep(0.2)
    assert hw.received_count() == 0
    assert [c.method for c in hw.fake.calls if c.method != "auth.test"] == []


def test_help_and_bad_input_are_answered_in_the_ack(hw: Harness) -> None:
    response = hw.command("help")
    assert response.status_code == 200
    assert "/hotwash triage <text>" in response.text
    usage = hw.command("triage")
    assert "needs some text" in usage.text
    assert "/hotwash triage <symptom text" in usage.text
    unknown = hw.command("deploy now")
    assert "Unknown subcommand `deploy`" in unknown.text


def test_slash_triage_acks_fast_then_posts_a_draft(hw: Harness) -> None:
    started = time.monotonic()
    response = hw.command("triage checkout returns 500s since the v2.14.0 deploy")
    assert time.monotonic() - started < 3.0
    assert response.status_code == 200 and "Working on `triage`" in response.text
    root = hw.fake.wait_for("chat.postMessage",
                            where=lambda c: c.args.get("thread_ts") is None)[0]
    assert root.args["channel"] == ALERT_CHANNEL
    _draft_update(hw)
    reply = hw.fake.wait_for("response_url")[0]
    assert "pending approval" in reply.args["text"]
    assert len(hw.store.list_drafts(status=DraftStatus.PENDING)) == 1


def test_slash_runbook_status_and_postmortem(hw: Harness) -> None:
    hw.command("runbook db connection pool exhausted")
    reply = hw.fake.wait_for("response_url")[0]
    assert "db/connection-pool" in json.dumps(reply.args["blocks"])
    assert "https://git.example.com/runbooks/db/connection-pool.md#pool-saturation" in \
        json.dumps(reply.args["blocks"])

    draft_id, _ = _alert_draft(hw)
    hw.command("status")
    status = hw.fake.wait_for("response_url", count=2)[1]
    assert "1 open incidents, 1 pending drafts" == status.args["text"]
    assert f"draft #{draft_id}" in json.dumps(status.args["blocks"])

    hw.command("postmortem")
    later = hw.fake.wait_for("response_url", count=3)[2]
    assert "Drafting the postmortem" in later.args["text"]
    posted = hw.fake.wait_for("chat.postMessage", where=lambda c: "Postmortem draft" in
                              json.dumps(c.args.get("blocks") or []))[0]
    assert posted.args["channel"] == ALERT_CHANNEL


def test_postmortem_unavailable_says_so(hw: Harness) -> None:
    hw.room.postmortem = None
    hw.command("postmortem")
    reply = hw.fake.wait_for("response_url")[0]
    assert "not available yet" in reply.args["text"]


def test_approve_by_an_approver_updates_the_message_and_audits(hw: Harness) -> None:
    draft_id, ts = _alert_draft(hw)
    started = time.monotonic()
    assert hw.click(blocks.APPROVE, draft_id=draft_id, message_ts=ts).status_code == 200
    assert time.monotonic() - started < 3.0
    update = hw.fake.wait_for("chat.update", count=2)[1]
    assert update.args["ts"] == ts
    text = json.dumps(update.args["blocks"])
    assert f"Approved by <@{APPROVER}>" in text
    assert not any(b["type"] == "actions" for b in update.args["blocks"])
    assert hw.store.get_draft(draft_id=draft_id).status is DraftStatus.APPROVED
    assert "draft.approved" in hw.event_types(f"draft:{draft_id}")
    assert hw.store.verify().ok


def test_non_approver_click_is_refused_privately_and_audited(hw: Harness) -> None:
    draft_id, ts = _alert_draft(hw)
    hw.click(blocks.APPROVE, draft_id=draft_id, user=STRANGER, message_ts=ts)
    refusal = hw.fake.wait_for("chat.postEphemeral")[0]
    assert refusal.args["user"] == STRANGER
    assert "not on the approver list" in refusal.args["text"]
    hw.click(blocks.EDIT, draft_id=draft_id, user=STRANGER, message_ts=ts)
    hw.fake.wait_for("chat.postEphemeral", count=2)
    assert hw.fake.calls_to("views.open") == []
    assert hw.store.get_draft(draft_id=draft_id).status is DraftStatus.PENDING
    eventually(lambda: hw.event_types(f"draft:{draft_id}").count("draft.refused") == 2)
    assert len(hw.fake.calls_to("chat.update")) == 1  # only the draft itself


def test_edit_modal_is_prefilled_and_submission_approves_the_edit(hw: Harness) -> None:
    draft_id, ts = _alert_draft(hw)
    draft = hw.store.get_draft(draft_id=draft_id)
    hw.click(blocks.EDIT, draft_id=draft_id, message_ts=ts)
    opened = hw.fake.wait_for("views.open")[0]
    view = opened.args["view"] if isinstance(opened.args["view"], dict) \
        else json.loads(opened.args["view"])
    ids = blocks.edit_block_ids(view)
    prefilled = "\n".join(b["element"].get("initial_value", "") for b in view["blocks"]
                          if b.get("block_id") in ids)
    assert prefilled == draft.markdown

    empty = hw.submit_view(view, values={i: {blocks.EDIT_INPUT: "  "} for i in ids})
    assert empty.json()["response_action"] == "errors"

    edited = "Pool exhausted after v2.14.0: raise maximumPoolSize to 40, then roll back."
    values = {i: {blocks.EDIT_INPUT: ""} for i in ids}
    values[ids[0]] = {blocks.EDIT_INPUT: edited}
    response = hw.submit_view(view, values=values)
    assert response.status_code == 200
    update = hw.fake.wait_for("chat.update", count=2)[1]
    assert update.args["ts"] == ts
    assert edited in json.dumps(update.args["blocks"])
    assert "Edited and approved" in json.dumps(update.args["blocks"])
    decision = hw.store.get_decision(draft_id=draft_id)
    assert decision is not None and decision.action is DecisionAction.EDIT_APPROVE
    assert decision.edited_markdown == edited
    assert {"draft.edited", "draft.approved"} <= set(hw.event_types(f"draft:{draft_id}"))


def test_reject_asks_for_a_reason(hw: Harness) -> None:
    draft_id, ts = _alert_draft(hw)
    hw.click(blocks.REJECT, draft_id=draft_id, message_ts=ts)
    view = hw.fake.wait_for("views.open")[0].args["view"]
    view = view if isinstance(view, dict) else json.loads(view)
    assert view["callback_id"] == blocks.REJECT_MODAL
    hw.submit_view(view, values={blocks.REASON_BLOCK: {blocks.REASON_INPUT:
                                                       "wrong service, it was payments"}})
    update = hw.fake.wait_for("chat.update", count=2)[1]
    assert "Rejected by" in json.dumps(update.args["blocks"])
    assert "wrong service, it was payments" in json.dumps(update.args["blocks"])
    decision = hw.store.get_decision(draft_id=draft_id)
    assert decision is not None and decision.reason == "wrong service, it was payments"


def test_regenerate_replaces_the_draft_in_place(hw: Harness) -> None:
    draft_id, ts = _alert_draft(hw)
    hw.click(blocks.REGENERATE, draft_id=draft_id, message_ts=ts)
    update = hw.fake.wait_for("chat.update", count=2)[1]
    assert update.args["ts"] == ts
    new_id = int([b for b in update.args["blocks"] if b["type"] == "actions"][0]
                 ["elements"][0]["value"])
    assert new_id != draft_id
    assert hw.store.get_draft(draft_id=draft_id).status is DraftStatus.SUPERSEDED
    eventually(lambda: hw.store.get_draft(draft_id=new_id).message_ts == ts)


def test_regenerate_uses_the_incidents_newest_alert(hw: Harness) -> None:
    draft_id, ts = _alert_draft(hw)
    # The same alert fires again with a worse figure: it joins the incident, no new draft.
    worse = NOTIFIER_TEXT.replace("18% of requests", "41% of requests")
    event = hw.message(worse, subtype="bot_message", bot_id="B0ALERTMANAGER",
                       username="Alertmanager")
    assert hw.event(event, event_id="EvALERT2").status_code == 200
    eventually(lambda: len(hw.store.alerts_for(
        incident_id=hw.store.get_draft(draft_id=draft_id).incident_id or 0)) == 2)
    assert "41%" not in hw.store.get_draft(draft_id=draft_id).markdown
    hw.click(blocks.REGENERATE, draft_id=draft_id, message_ts=ts)
    update = hw.fake.wait_for("chat.update", count=2)[1]
    new_id = int([b for b in update.args["blocks"] if b["type"] == "actions"][0]
                 ["elements"][0]["value"])
    assert "41% of requests" in hw.store.get_draft(draft_id=new_id).markdown


def test_member_of_the_approver_group_may_approve(tmp_path: Path) -> None:
    with running(tmp_path, approvers=[],
                 extra_settings={"approver_group": "S0ONCALL"}) as hw:
        hw.fake.add_usergroup("S0ONCALL", ["U0GROUPIE"])
        draft_id, ts = _alert_draft(hw)
        hw.click(blocks.APPROVE, draft_id=draft_id, user=STRANGER, message_ts=ts)
        hw.fake.wait_for("chat.postEphemeral")
        hw.click(blocks.APPROVE, draft_id=draft_id, user="U0GROUPIE", message_ts=ts)
        update = hw.fake.wait_for("chat.update", count=2)[1]
        assert "Approved by <@U0GROUPIE>" in json.dumps(update.args["blocks"])
        assert hw.fake.calls_to("usergroups.users.list")[0].args["usergroup"] == "S0ONCALL"


def test_slash_triage_where_the_bot_cannot_post_shows_the_draft_privately(
        hw: Harness) -> None:
    hw.fake.inject("chat.postMessage", status=200, error="not_in_channel", retry_after=None,
                   times=3)
    hw.command("triage payments API timing out for EU customers", channel="C0ELSEWHERE")
    reply = hw.fake.wait_for("response_url", where=lambda c: "blocks" in c.args)[0]
    assert reply.args["response_type"] == "ephemeral"
    actions = [b for b in reply.args["blocks"] if b["type"] == "actions"][0]
    draft_id = int(actions["elements"][0]["value"])
    # Approving an ephemeral draft replaces it through the response_url.
    payload_click = hw.click(blocks.APPROVE, draft_id=draft_id, channel="C0ELSEWHERE",
                             ephemeral=True)
    assert payload_click.status_code == 200
    replaced = hw.fake.wait_for("response_url", where=lambda c: c.args.get("replace_original")
                                is True)[0]
    assert "Approved by" in json.dumps(replaced.args["blocks"])
    assert hw.store.get_draft(draft_id=draft_id).status is DraftStatus.APPROVED


def test_alertmanager_slack_notifier_attachment_is_triaged(hw: Harness) -> None:
    attachment = {
        "color": "danger", "fallback": "[FIRING:1] CheckoutHighErrorRate",
        "title": "[FIRING:1] CheckoutHighErrorRate",
        "text": "*Alert:* checkout is returning HTTP 5xx - `critical`\n*Details:*\n"
                "  • *alertname:* `CheckoutHighErrorRate`\n  • *service:* `checkout`\n"
                "  • *namespace:* `shop`\n  • *severity:* `critical`",
    }
    event = hw.message("", subtype="bot_message", bot_id="B0ALERTMANAGER",
                       attachments=[attachment])
    hw.event(event, event_id="EvATTACH")
    working = hw.fake.wait_for("chat.postMessage")[0]
    assert working.args["thread_ts"] == event["ts"]
    assert "*CheckoutHighErrorRate*" in working.args["text"]
    _draft_update(hw)


def test_thread_replies_and_other_channels_are_not_triaged(hw: Harness) -> None:
    root = hw.message(NOTIFIER_TEXT)
    reply = hw.message("looking into it", thread_ts=root["ts"])
    elsewhere = hw.message(NOTIFIER_TEXT, channel="C0RANDOM")
    for n, event in enumerate((reply, elsewhere)):
        assert hw.event(event, event_id=f"EvSKIP{n}").status_code == 200
    eventually(lambda: all(hw.store.get_received(received_id=i).status == "ignored"
                           for i in (1, 2)))
    assert hw.store.list_drafts() == []
    assert hw.fake.calls_to("chat.postMessage") == []


def test_model_written_draft_and_regenerate_with_nothing_new(tmp_path: Path) -> None:
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI() as model, running(tmp_path, extra_settings={
            "llm_base_url": model.base_url, "llm_model": "fake-model",
            "llm_api_key": "sk-test"}) as hw:
        draft_id, ts = _alert_draft(hw)
        draft = hw.store.get_draft(draft_id=draft_id)
        assert draft.model == "fake-model" and draft.prompt_tokens > 0
        update = hw.fake.calls_to("chat.update")[0]
        assert "model `fake-model`" in json.dumps(update.args["blocks"])
        calls = len(model.chat_requests())
        hw.click(blocks.REGENERATE, draft_id=draft_id, message_ts=ts)
        note = hw.fake.wait_for("chat.postEphemeral")[0]
        assert "Nothing changed since draft" in note.args["text"]
        assert len(model.chat_requests()) == calls  # served from the draft cache
        assert hw.store.get_draft(draft_id=draft_id).status is DraftStatus.PENDING


def test_approval_stands_when_slack_cannot_update_the_message(hw: Harness) -> None:
    draft_id, ts = _alert_draft(hw)
    hw.fake.inject("chat.update", status=200, error="message_not_found", retry_after=None)
    hw.click(blocks.APPROVE, draft_id=draft_id, message_ts=ts)
    eventually(lambda: "draft.approved" in hw.event_types(f"draft:{draft_id}"))
    hw.fake.wait_for("chat.update", count=2)
    assert hw.store.get_draft(draft_id=draft_id).status is DraftStatus.APPROVED


def test_approving_a_postmortem_in_slack_audits_its_section_edits(hw: Harness) -> None:
    _alert_draft(hw)
    hw.command("postmortem")
    posted = hw.fake.wait_for("chat.postMessage", where=lambda c: "Postmortem draft" in
                              json.dumps(c.args.get("blocks") or []))[0]
    actions = [b for b in posted.args["blocks"] if b["type"] == "actions"][0]
    draft_id = int(actions["elements"][0]["value"])
    ts = hw.fake.messages[ALERT_CHANNEL][-1]["ts"]
    hw.click(blocks.APPROVE, draft_id=draft_id, message_ts=ts)
    eventually(lambda: "postmortem.edits" in hw.event_types(f"draft:{draft_id}"))
    assert hw.store.get_draft(draft_id=draft_id).status is DraftStatus.APPROVED
