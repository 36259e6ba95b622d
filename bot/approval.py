"""The draft state machine and who may drive it.

    pending -> approved | rejected      (a human decision, exactly one per draft)
    pending -> superseded               (a newer draft of the same kind for the incident)

Only allow-listed approvers may act; a refusal raises ``NotAllowed`` and is itself audited.
Acting again with the same action returns the existing decision (Slack retries, double
clicks, two approvers pressing Approve together). Every transition runs in one transaction
holding the audit chain lock, so two racing approvers leave exactly one decision.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update

from bot import metrics
from bot.audit.chain import append_event, sha256_hex
from bot.audit.models import DecisionRow, DraftRow
from bot.audit.store import AuditStore, decision_from_row
from bot.domain import Decision, DecisionAction, DraftStatus
from bot.settings import Settings


class ApprovalError(Exception):
    """Base class: the action was not carried out; the message says why."""


class NotAllowed(ApprovalError):
    """The actor is not an approver. The refusal is recorded in the audit log."""


class UnknownDraft(ApprovalError, LookupError):
    """No draft with that id."""


class DraftNotPending(ApprovalError):
    """The draft was superseded or already decided the other way."""


MembershipLookup = Callable[[str, str], bool]
"""``is_member(user_id, group_id) -> bool``, e.g. backed by Slack usergroups.users.list."""


@dataclass(frozen=True)
class Approvers:
    """Who may approve, edit or reject: explicit user IDs and/or members of one user group."""

    user_ids: frozenset[str] = field(default_factory=frozenset)
    group_id: str | None = None
    is_member: MembershipLookup | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *,
                      is_member: MembershipLookup | None = None) -> Approvers:
        """Allow-list from ``HOTWASH_APPROVERS`` / ``HOTWASH_APPROVER_GROUP``."""
        return cls(user_ids=frozenset(settings.approvers), group_id=settings.approver_group,
                   is_member=is_member)

    def check(self, actor: str) -> str | None:
        """None when ``actor`` may act, else the reason for refusing."""
        if actor in self.user_ids:
            return None
        if self.group_id and self.is_member is not None:
            try:
                if self.is_member(actor, self.group_id):
                    return None
            except Exception as exc:  # fail closed: a lookup outage refuses, with the cause
                return f"could not check membership of {self.group_id}: {exc}"
            return f"{actor} is not an approver nor a member of {self.group_id}"
        return f"{actor} is not an approver"

    def allows(self, actor: str) -> bool:
        return self.check(actor) is None


def approve(*, store: AuditStore, draft_id: int, actor: str, approvers: Approvers,
            edited_markdown: str | None = None, via: str = "slack") -> Decision:
    """Approve a pending draft, optionally with an edited text (the diff is stored and
    both the edit and the approval are audited)."""
    action = DecisionAction.APPROVE
    if edited_markdown is not None:
        action = DecisionAction.EDIT_APPROVE
    return _decide(store=store, draft_id=draft_id, actor=actor, approvers=approvers,
                   action=action, reason=None, edited_markdown=edited_markdown, via=via)


def reject(*, store: AuditStore, draft_id: int, actor: str, reason: str,
           approvers: Approvers, via: str = "slack") -> Decision:
    """Reject a pending draft with a reason."""
    return _decide(store=store, draft_id=draft_id, actor=actor, approvers=approvers,
                   action=DecisionAction.REJECT, reason=reason, edited_markdown=None, via=via)


def _verdict(action: DecisionAction | str) -> DraftStatus:
    return DraftStatus.REJECTED if action == DecisionAction.REJECT else DraftStatus.APPROVED


def _decide(*, store: AuditStore, draft_id: int, actor: str, approvers: Approvers,
            action: DecisionAction, reason: str | None, edited_markdown: str | None,
            via: str) -> Decision:
    refusal = approvers.check(actor)
    if refusal is not None:
        store.record_event(type="draft.refused", subject=f"draft:{draft_id}",
                           payload={"draft_id": draft_id, "actor": actor,
                                    "action": action.value, "reason": refusal, "via": via})
        raise NotAllowed(f"{refusal}; draft {draft_id} left unchanged")
    target = _verdict(action)
    now = store.now()
    with store.write() as session:  # chain lock held: no other writer runs until commit
        draft = session.scalar(select(DraftRow).where(DraftRow.id == draft_id)
                               .with_for_update())
        if draft is None:
            raise UnknownDraft(f"no draft {draft_id}")
        if edited_markdown is not None and edited_markdown == draft.markdown:
            edited_markdown, action = None, DecisionAction.APPROVE  # an unchanged "edit"
        existing = session.scalar(select(DecisionRow).where(DecisionRow.draft_id == draft_id))
        if existing is not None:
            if _verdict(existing.action) is target and (
                    edited_markdown is None or edited_markdown == existing.edited_markdown):
                return decision_from_row(existing)  # idempotent repeat
            raise DraftNotPending(f"draft {draft_id} was already {draft.status} by "
                                  f"{existing.actor} at {existing.at:%Y-%m-%d %H:%M:%S}Z")
        if draft.status != DraftStatus.PENDING.value:
            hint = (f" by draft {draft.superseded_by}" if draft.superseded_by else "")
            raise DraftNotPending(f"draft {draft_id} is {draft.status}{hint}; "
                                  "only pending drafts can be decided")
        moved = session.execute(
            update(DraftRow).where(DraftRow.id == draft_id,
                                   DraftRow.status == DraftStatus.PENDING.value)
            .values(status=target.value).execution_options(synchronize_session=False))
        if getattr(moved, "rowcount", 0) != 1:  # belt and braces behind the lock
            raise DraftNotPending(f"draft {draft_id} is no longer pending")
        diff = None
        if edited_markdown is not None:
            diff = "".join(difflib.unified_diff(
                draft.markdown.splitlines(keepends=True),
                edited_markdown.splitlines(keepends=True),
                fromfile=f"draft-{draft_id}", tofile=f"draft-{draft_id}-edited-by-{actor}"))
        row = DecisionRow(draft_id=draft_id, action=action.value, actor=actor, at=now,
                          reason=reason, edited_markdown=edited_markdown, diff=diff, via=via)
        session.add(row)
        session.flush()
        if edited_markdown is not None:
            append_event(session, type="draft.edited", subject=f"draft:{draft_id}", at=now,
                         payload={"draft_id": draft_id, "actor": actor, "via": via,
                                  "original_sha256": sha256_hex(draft.markdown),
                                  "edited_sha256": sha256_hex(edited_markdown),
                                  "diff_sha256": sha256_hex(diff or "")})
        append_event(session, type=f"draft.{target.value}", subject=f"draft:{draft_id}",
                     at=now, payload={"draft_id": draft_id, "decision_id": row.id,
                                      "action": action.value, "actor": actor, "via": via,
                                      "reason": reason})
        decision = decision_from_row(row)
        kind, created_at = draft.kind, draft.created_at
    # Counted once the transaction committed: a decision that rolled back never happened.
    metrics.record_decision(kind=kind, action=action.value,
                            seconds=metrics.seconds_between(created_at, now))
    metrics.record_draft(kind=kind, status=target.value)
    return decision
