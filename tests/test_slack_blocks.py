"""Block Kit builders are pure: domain objects in, blocks out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bot.domain import Decision, DecisionAction, Draft, DraftKind, DraftStatus
from bot.slack import blocks


def _draft(**update: Any) -> Draft:
    content = {
        "schema": "hotwash.triage/v1", "author": "model",
        "summary": "checkout 5xx since v2.14.0: the DB connection pool is exhausted.",
        "severity": "SEV2", "severity_rationale": "customers cannot pay",
        "likely_causes": [
            {"cause": "Pool max 20 too small after deploy", "confidence": "high",
             "evidence_ids": ["E2", "E3"], "quotes": [], "supported": True},
            {"cause": "Database down", "confidence": "low", "evidence_ids": [],
             "quotes": [], "supported": False},
        ],
        "next_steps": [
            {"step": "Check active connections", "command": "kubectl -n shop logs deploy/checkout",
             "cites": ["R1", "E2"], "supported": True},
        ],
        "related_runbooks": ["R1"],
        "evidence": [
            {"id": "E2", "kind": "log_template", "title": "HikariPool timeout", "ref": None},
            {"id": "R1", "kind": "runbook", "title": "DB pool",
             "ref": "db/connection-pool#Diagnosis > Pool saturation"},
        ],
        "gaps": [{"source": "elasticsearch", "error": "timeout after 10s", "query": "{}"}],
    }
    data: dict[str, Any] = dict(
        id=7, kind=DraftKind.TRIAGE, incident_id=3, content=content,
        markdown="### Summary\ncheckout 5xx", model="qwen2.5-0.5b", prompt_tokens=1234,
        completion_tokens=321, grounding_score=0.75, notes=("secondary model used",))
    data.update(update)
    return Draft(**data)


def _text(built: list[dict[str, Any]]) -> str:
    return json.dumps(built, ensure_ascii=False)


def test_pending_draft_shows_everything_an_approver_needs() -> None:
    text, built = blocks.draft_message(_draft(), url_base="https://git.example.com/rb/")
    assert built[0] == {"type": "header", "text": {"type": "plain_text",
                                                   "text": "Triage draft — pending approval"}}
    body = _text(built)
    assert "DB connection pool is exhausted" in body and "pending approval" in text
    assert "*Severity guess:* SEV2 — customers cannot pay" in body
    assert "Pool max 20 too small after deploy — `E2` `E3` (high confidence)" in body
    assert "not supported by the evidence" in body
    assert "grounding score 75%" in body
    # Runbook cited by id becomes a link to the right section.
    assert "<https://git.example.com/rb/db/connection-pool.md#pool-saturation|" in body
    assert "`kubectl -n shop logs deploy/checkout` _(suggested, not run)_" in body
    assert "elasticsearch: timeout after 10s" in body and "secondary model used" in body
    assert "model `qwen2.5-0.5b` · 1234+321 tokens" in body
    assert "`E2` HikariPool timeout" in body and "`R1` DB pool" in body  # what was cited
    actions = [b for b in built if b["type"] == "actions"][0]
    assert [e["action_id"] for e in actions["elements"]] == [
        blocks.APPROVE, blocks.EDIT, blocks.REJECT, blocks.REGENERATE]
    assert {e["value"] for e in actions["elements"]} == {"7"}


def test_without_url_base_runbooks_are_named_not_linked() -> None:
    _, built = blocks.draft_message(_draft(), url_base=None)
    assert "`db/connection-pool § Diagnosis > Pool saturation`" in _text(built)


def test_approved_draft_names_who_and_when_and_has_no_buttons() -> None:
    at = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)
    decision = Decision(draft_id=7, action=DecisionAction.APPROVE, actor="U0APPROVER", at=at)
    text, built = blocks.draft_message(_draft(status=DraftStatus.APPROVED), decision=decision)
    assert "approved" in text
    assert "Approved by <@U0APPROVER> at 2026-11-28 14:30 UTC" in _text(built)
    assert not any(b["type"] == "actions" for b in built)


def test_rejected_and_edited_drafts() -> None:
    at = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)
    rejected = Decision(draft_id=7, action=DecisionAction.REJECT, actor="U1", at=at,
                        reason="wrong service")
    _, built = blocks.draft_message(_draft(), decision=rejected)
    assert "Rejected by <@U1> at 2026-11-28 14:30 UTC: _wrong service_" in _text(built)
    edited = Decision(draft_id=7, action=DecisionAction.EDIT_APPROVE, actor="U1", at=at,
                      edited_markdown="## Cause\n**Pool** exhausted")
    _, built = blocks.draft_message(_draft(), decision=edited)
    body = _text(built)
    assert "Edited and approved by <@U1>" in body
    assert "*Cause*\\n*Pool* exhausted" in body  # markdown became Slack mrkdwn
    assert "Pool max 20" not in body  # the edited text replaces the model's


def test_superseded_draft_has_no_buttons() -> None:
    _, built = blocks.draft_message(_draft(status=DraftStatus.SUPERSEDED))
    assert "superseded" in built[0]["text"]["text"]
    assert not any(b["type"] == "actions" for b in built)


def test_huge_drafts_stay_within_slack_limits() -> None:
    long = "x" * 10_000
    _, built = blocks.draft_message(_draft(markdown=long, content={"summary": long}))
    for block in built:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    markdown = "\n".join(f"line {n}: " + "y" * 60 for n in range(200))  # ~14k characters
    modal = blocks.edit_modal(_draft(markdown=markdown), ref=blocks.DraftRef(draft_id=7))
    ids = blocks.edit_block_ids(modal)
    values = [b["element"]["initial_value"] for b in modal["blocks"] if b.get("block_id") in ids]
    assert len(ids) == 5 and all(len(v) <= 3000 for v in values)
    assert "\n".join(values) == markdown  # nothing of a long draft is lost when editing


def test_unstructured_draft_falls_back_to_its_markdown() -> None:
    _, built = blocks.draft_message(_draft(content={}, markdown="First paragraph.\n\nMore."))
    assert "First paragraph." in _text(built)


def test_split_for_inputs_round_trips() -> None:
    assert blocks.split_for_inputs("") == [""]
    text = "a\n\nb" + "\n" + "c" * 2999 + "\n" + "d"
    pieces = blocks.split_for_inputs(text)
    assert "\n".join(pieces) == text and all(len(p) <= 3000 for p in pieces)
    assert [len(p) for p in blocks.split_for_inputs("z" * 7000)] == [3000, 3000, 1000]


def test_modal_metadata_round_trips() -> None:
    ref = blocks.DraftRef(draft_id=7, channel="C1", ts="1.2")
    modal = blocks.reject_modal(_draft(), ref=ref)
    assert blocks.DraftRef.loads(modal["private_metadata"]) == ref
    assert modal["callback_id"] == blocks.REJECT_MODAL
