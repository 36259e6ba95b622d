"""The approval state machine: every transition, every refusal, and the approver race."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from bot.approval import (
    Approvers,
    DraftNotPending,
    NotAllowed,
    UnknownDraft,
    approve,
    reject,
)
from bot.audit.store import AuditStore
from bot.domain import Decision, DecisionAction, Draft, DraftKind, DraftStatus

APPROVERS = Approvers(user_ids=frozenset({"U_ALICE", "U_BOB"}))


def pending_draft(store: AuditStore, *, incident_id: int | None = None,
                  text: str = "## Triage\n\nLikely cause: DB pool exhausted [E1].\n") -> int:
    draft = store.save_draft(draft=Draft(kind=DraftKind.TRIAGE, incident_id=incident_id,
                                         content={"cause": "pool"}, markdown=text,
                                         model="evidence-only"))
    assert draft.id is not None
    return draft.id


def event_types(store: AuditStore, draft_id: int) -> list[str]:
    return [e.type for e in store.events(subject=f"draft:{draft_id}")]


def test_pending_to_approved(any_store: AuditStore) -> None:
    draft_id = pending_draft(any_store)
    decision = approve(store=any_store, draft_id=draft_id, actor="U_ALICE",
                       approvers=APPROVERS)
    assert decision.action is DecisionAction.APPROVE and decision.actor == "U_ALICE"
    assert any_store.get_draft(draft_id=draft_id).status is DraftStatus.APPROVED
    assert any_store.get_decision(draft_id=draft_id) == decision
    assert event_types(any_store, draft_id) == ["draft.created", "draft.approved"]


def test_pending_to_rejected_keeps_reason(any_store: AuditStore) -> None:
    draft_id = pending_draft(any_store)
    decision = reject(store=any_store, draft_id=draft_id, actor="U_BOB",
                      reason="wrong service", approvers=APPROVERS)
    assert decision.action is DecisionAction.REJECT and decision.reason == "wrong service"
    assert any_store.get_draft(draft_id=draft_id).status is DraftStatus.REJECTED
    events = list(any_store.events(subject=f"draft:{draft_id}"))
    assert events[-1].type == "draft.rejected"
    assert events[-1].payload["reason"] == "wrong service"


def test_edit_then_approve_records_edit_diff_and_approval(any_store: AuditStore) -> None:
    draft_id = pending_draft(any_store)
    edited = "## Triage\n\nLikely cause: DB pool exhausted after v2.14.0 [E1].\n"
    decision = approve(store=any_store, draft_id=draft_id, actor="U_ALICE",
                       approvers=APPROVERS, edited_markdown=edited)
    assert decision.action is DecisionAction.EDIT_APPROVE
    assert decision.edited_markdown == edited
    assert decision.diff is not None
    assert "-Likely cause: DB pool exhausted [E1]." in decision.diff
    assert "+Likely cause: DB pool exhausted after v2.14.0 [E1]." in decision.diff
    # The original draft text is kept; the edit lives in the decision.
    assert "after v2.14.0" not in any_store.get_draft(draft_id=draft_id).markdown
    assert event_types(any_store, draft_id) == ["draft.created", "draft.edited",
                                                "draft.approved"]


def test_non_approver_is_refused_and_the_refusal_is_audited(any_store: AuditStore) -> None:
    draft_id = pending_draft(any_store)
    with pytest.raises(NotAllowed, match="U_MALLORY is not an approver"):
        approve(store=any_store, draft_id=draft_id, actor="U_MALLORY", approvers=APPROVERS)
    with pytest.raises(NotAllowed):
        reject(store=any_store, draft_id=draft_id, actor="U_MALLORY", reason="x",
               approvers=APPROVERS)
    assert any_store.get_draft(draft_id=draft_id).status is DraftStatus.PENDING
    assert any_store.get_decision(draft_id=draft_id) is None
    refusals = [e.payload for e in any_store.events(subject=f"draft:{draft_id}")
                if e.type == "draft.refused"]
    assert [(r["actor"], r["action"]) for r in refusals] == [("U_MALLORY", "approve"),
                                                              ("U_MALLORY", "reject")]
    assert any_store.verify().ok


def test_group_membership_lookup_allows_and_fails_closed(any_store: AuditStore) -> None:
    members = {"U_CAROL"}

    def is_member(user: str, group: str) -> bool:
        assert group == "S_ONCALL"
        return user in members

    approvers = Approvers(group_id="S_ONCALL", is_member=is_member)
    first, second = pending_draft(any_store), pending_draft(any_store)
    assert approve(store=any_store, draft_id=first, actor="U_CAROL",
                   approvers=approvers).actor == "U_CAROL"
    with pytest.raises(NotAllowed, match="not an approver nor a member of S_ONCALL"):
        approve(store=any_store, draft_id=second, actor="U_DAVE", approvers=approvers)

    def broken(user: str, group: str) -> bool:
        raise TimeoutError("slack usergroups.users.list timed out")

    with pytest.raises(NotAllowed, match="timed out"):
        approve(store=any_store, draft_id=second, actor="U_CAROL",
                approvers=Approvers(group_id="S_ONCALL", is_member=broken))
    assert any_store.get_draft(draft_id=second).status is DraftStatus.PENDING


def test_acting_twice_with_the_same_action_returns_the_existing_decision(
        any_store: AuditStore) -> None:
    approved, rejected = pending_draft(any_store), pending_draft(any_store)
    first = approve(store=any_store, draft_id=approved, actor="U_ALICE", approvers=APPROVERS)
    again = approve(store=any_store, draft_id=approved, actor="U_BOB", approvers=APPROVERS)
    assert again == first and again.actor == "U_ALICE"
    no = reject(store=any_store, draft_id=rejected, actor="U_BOB", reason="noise",
                approvers=APPROVERS)
    assert reject(store=any_store, draft_id=rejected, actor="U_BOB", reason="noise",
                  approvers=APPROVERS) == no
    assert any_store.count_decisions(draft_id=approved) == 1
    assert event_types(any_store, approved) == ["draft.created", "draft.approved"]


def test_opposite_action_on_a_decided_draft_is_refused(any_store: AuditStore) -> None:
    draft_id = pending_draft(any_store)
    approve(store=any_store, draft_id=draft_id, actor="U_ALICE", approvers=APPROVERS)
    with pytest.raises(DraftNotPending, match="already approved by U_ALICE"):
        reject(store=any_store, draft_id=draft_id, actor="U_BOB", reason="late",
               approvers=APPROVERS)
    with pytest.raises(DraftNotPending, match="already approved"):
        approve(store=any_store, draft_id=draft_id, actor="U_BOB", approvers=APPROVERS,
                edited_markdown="a different text")
    other = pending_draft(any_store)
    reject(store=any_store, draft_id=other, actor="U_BOB", reason="noise", approvers=APPROVERS)
    with pytest.raises(DraftNotPending, match="already rejected"):
        approve(store=any_store, draft_id=other, actor="U_ALICE", approvers=APPROVERS)
    assert any_store.get_draft(draft_id=other).status is DraftStatus.REJECTED


def test_superseded_draft_cannot_be_decided(any_store: AuditStore) -> None:
    from bot.domain import Alert

    incident, _ = any_store.open_incident(
        alert=Alert(name="CheckoutHighErrorRate", fingerprint="fp"), window_s=3600)
    old = pending_draft(any_store, incident_id=incident.id)
    new = pending_draft(any_store, incident_id=incident.id, text="newer")
    with pytest.raises(DraftNotPending, match=f"superseded by draft {new}"):
        approve(store=any_store, draft_id=old, actor="U_ALICE", approvers=APPROVERS)
    with pytest.raises(DraftNotPending, match="superseded"):
        reject(store=any_store, draft_id=old, actor="U_ALICE", reason="x", approvers=APPROVERS)
    assert any_store.get_decision(draft_id=old) is None
    approve(store=any_store, draft_id=new, actor="U_ALICE", approvers=APPROVERS)


def test_unknown_draft_is_a_clear_error(any_store: AuditStore) -> None:
    with pytest.raises(UnknownDraft, match="no draft 4242"):
        approve(store=any_store, draft_id=4242, actor="U_ALICE", approvers=APPROVERS)
    with pytest.raises(UnknownDraft):
        reject(store=any_store, draft_id=4242, actor="U_ALICE", reason="x",
               approvers=APPROVERS)
    assert list(any_store.events()) == []


def race(store: AuditStore, draft_id: int,
         actions: list[Callable[[], Decision]]) -> list[Decision | Exception]:
    """Run ``actions`` in threads released together; each uses its own DB session."""
    barrier = threading.Barrier(len(actions))
    results: list[Decision | Exception] = [RuntimeError("not run")] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = actions[index]()
        except Exception as exc:  # collected and asserted on below
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("round_", range(5))
def test_two_approvers_racing_leave_exactly_one_decision(any_store: AuditStore,
                                                         round_: int) -> None:
    """Real concurrent sessions: on PostgreSQL (row locks) and SQLite (write lock)."""
    draft_id = pending_draft(any_store)
    results = race(any_store, draft_id, [
        lambda: approve(store=any_store, draft_id=draft_id, actor="U_ALICE",
                        approvers=APPROVERS, edited_markdown="alice's edit\n"),
        lambda: approve(store=any_store, draft_id=draft_id, actor="U_BOB",
                        approvers=APPROVERS),
        lambda: reject(store=any_store, draft_id=draft_id, actor="U_BOB", reason="noise",
                       approvers=APPROVERS),
    ])
    assert any_store.count_decisions(draft_id=draft_id) == 1
    winner = any_store.get_decision(draft_id=draft_id)
    assert winner is not None
    decisions = [r for r in results if isinstance(r, Decision)]
    errors = [r for r in results if not isinstance(r, Decision)]
    # Everyone who got a decision back got the one that was stored.
    assert decisions and all(d == winner for d in decisions)
    assert all(isinstance(e, DraftNotPending) for e in errors), errors
    status = any_store.get_draft(draft_id=draft_id).status
    assert status is (DraftStatus.REJECTED if winner.action is DecisionAction.REJECT
                      else DraftStatus.APPROVED)
    verdicts = [t for t in event_types(any_store, draft_id)
                if t in {"draft.approved", "draft.rejected"}]
    assert len(verdicts) == 1
    assert any_store.verify().ok


def test_concurrent_writers_never_fork_the_chain(any_store: AuditStore) -> None:
    def burst(n: int) -> Callable[[], Decision]:
        def work() -> Decision:
            for i in range(10):
                any_store.record_received(source="slack", body=f"{n}-{i}".encode(), headers={})
            return Decision(draft_id=0, action=DecisionAction.APPROVE, actor="x")
        return work

    results = race(any_store, 0, [burst(n) for n in range(4)])
    assert all(isinstance(r, Decision) for r in results), results
    report = any_store.verify()
    assert report.ok and report.events == 40


def test_racing_identical_approvals_both_get_the_one_decision(any_store: AuditStore) -> None:
    draft_id = pending_draft(any_store)
    results = race(any_store, draft_id, [
        lambda: approve(store=any_store, draft_id=draft_id, actor="U_ALICE",
                        approvers=APPROVERS),
        lambda: approve(store=any_store, draft_id=draft_id, actor="U_BOB",
                        approvers=APPROVERS),
    ])
    stored = any_store.get_decision(draft_id=draft_id)
    assert results == [stored, stored], results


def test_an_unchanged_edit_is_a_plain_approval(any_store: AuditStore) -> None:
    text = "## Triage\n\nunchanged\n"
    draft_id = pending_draft(any_store, text=text)
    decision = approve(store=any_store, draft_id=draft_id, actor="U_ALICE",
                       approvers=APPROVERS, edited_markdown=text)
    assert decision.action is DecisionAction.APPROVE and decision.diff is None
    assert event_types(any_store, draft_id) == ["draft.created", "draft.approved"]
