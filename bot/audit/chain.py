"""The hash chain: canonical JSON, the one writer of events, and the verifier.

Every event row carries ``hash = sha256(prev_hash + canonical_json(doc))`` where ``doc`` is
``{seq, at, type, subject, payload}``. Editing, deleting or reordering a row breaks the
recomputed chain at that row. Large or purgeable data (raw payload bodies, raw evidence,
edited texts) appear in payloads only as SHA-256 digests, so the retention job can delete
them and the chain still verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.audit.models import (
    GENESIS_HASH,
    ChainHead,
    DecisionRow,
    DraftRow,
    Event,
    EvidenceBlob,
    Received,
)

HEAD_ID = 1


class ChainError(RuntimeError):
    """The chain cannot be appended to (e.g. the head row is missing: schema not migrated)."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 kept, NaN refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def sha256_hex(data: bytes | str) -> str:
    """Hex SHA-256 of bytes, or of a string encoded as UTF-8."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def event_hash(*, prev_hash: str, seq: int, at: str, type: str, subject: str,
               payload: Any) -> str:
    """The hash of one event given its predecessor's hash."""
    doc = {"seq": seq, "at": at, "type": type, "subject": subject, "payload": payload}
    return sha256_hex(prev_hash + canonical_json(doc))


def format_at(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds: the exact text that is hashed."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def lock_chain(session: Session) -> None:
    """Take the chain lock for the rest of this transaction.

    A no-op UPDATE of the head row: a row lock on PostgreSQL, the write lock on SQLite.
    Writers that call this first are fully serialised, so check-then-write logic after it
    (supersede, approve, open incident) cannot race, and appends can never fork the chain.
    """
    result = session.execute(
        update(ChainHead).where(ChainHead.id == HEAD_ID).values(seq=ChainHead.seq)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 1) != 1:
        raise ChainError("audit chain head row is missing: run `hotwash db upgrade`")


def append_event(session: Session, *, type: str, subject: str, payload: dict[str, Any],
                 at: datetime | None = None) -> Event:
    """Append one event to the chain inside ``session``'s transaction. The only writer.

    The head row is advanced with UPDATE ... RETURNING, which both locks it and hands back
    the new sequence number and the previous hash atomically.
    """
    text = canonical_json(payload)  # fails early on non-JSON values
    row = session.execute(
        update(ChainHead).where(ChainHead.id == HEAD_ID).values(seq=ChainHead.seq + 1)
        .returning(ChainHead.seq, ChainHead.hash)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        raise ChainError("audit chain head row is missing: run `hotwash db upgrade`")
    seq, prev_hash = int(row[0]), str(row[1])
    at_text = format_at(at or datetime.now(UTC))
    digest = event_hash(prev_hash=prev_hash, seq=seq, at=at_text, type=type, subject=subject,
                        payload=json.loads(text))
    event = Event(seq=seq, at=at_text, type=type, subject=subject, payload=text,
                  prev_hash=prev_hash, hash=digest)
    session.add(event)
    session.execute(
        update(ChainHead).where(ChainHead.id == HEAD_ID).values(hash=digest)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return event


@dataclass(frozen=True)
class ChainReport:
    """Result of walking the chain. ``bad_seq`` names the first row that fails."""

    ok: bool
    events: int
    head_hash: str
    bad_seq: int | None = None
    reason: str | None = None
    problems: tuple[str, ...] = ()
    """Every record that contradicts the (intact) chain, not only the first."""


def check_events(events: Iterable[Event], *, head: ChainHead | None) -> ChainReport:
    """Walk ``events`` in ``seq`` order and report the first break, if any."""
    prev_hash = GENESIS_HASH
    expected = 1
    count = 0
    for event in events:
        if event.seq != expected:
            kind = "missing (deleted?)" if event.seq > expected else "out of order"
            return ChainReport(False, count, prev_hash, expected,
                               f"event #{expected} is {kind}; next row found is #{event.seq}")
        if event.prev_hash != prev_hash:
            return ChainReport(False, count, prev_hash, event.seq,
                               f"event #{event.seq} does not follow #{event.seq - 1} "
                               "(prev_hash mismatch: row deleted, replaced or reordered)")
        try:
            payload = json.loads(event.payload)
        except ValueError:
            return ChainReport(False, count, prev_hash, event.seq,
                               f"event #{event.seq} payload is not valid JSON (edited)")
        digest = event_hash(prev_hash=prev_hash, seq=event.seq, at=event.at, type=event.type,
                            subject=event.subject, payload=payload)
        if digest != event.hash:
            return ChainReport(False, count, prev_hash, event.seq,
                               f"event #{event.seq} content does not match its hash (edited)")
        prev_hash = event.hash
        expected += 1
        count += 1
    if head is None:
        return ChainReport(False, count, prev_hash, None, "chain head row is missing")
    if head.seq != count or head.hash != prev_hash:
        return ChainReport(False, count, prev_hash, count + 1 if head.seq > count else head.seq,
                           f"chain head says {head.seq} events but the log ends at #{count} "
                           "(tail deleted or head edited)")
    return ChainReport(True, count, prev_hash)


def verify_chain(session: Session) -> ChainReport:
    """Walk every event in ``seq`` order (streamed, so a long log stays cheap); when the
    chain is intact, also check the records it vouches for (:func:`check_records`)."""
    head = session.get(ChainHead, HEAD_ID)
    events = session.scalars(
        select(Event).order_by(Event.seq).execution_options(yield_per=1000)
    )
    try:
        report = check_events(events, head=head)
    finally:
        events.close()  # the walk may stop early; release the (server-side) cursor now
    if not report.ok:
        return report
    problems = check_records(session)
    if not problems:
        return report
    return ChainReport(False, report.events, report.head_hash, problems[0][0],
                       problems[0][1], tuple(text for _, text in problems))


def _payloads(session: Session, *types: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    rows = session.execute(select(Event.seq, Event.type, Event.payload)
                           .where(Event.type.in_(types)).order_by(Event.seq)
                           .execution_options(yield_per=1000))
    try:
        for seq, type_, payload in rows:
            yield int(seq), str(type_), json.loads(payload)
    finally:
        rows.close()


def check_records(session: Session) -> list[tuple[int, str]]:
    """Records that contradict the digests and facts the chain recorded about them:
    raw payloads and evidence (unless purged by retention), draft texts, draft statuses and
    decisions. Returns (event seq, problem) pairs in chain order."""
    problems: list[tuple[int, str]] = []
    received: dict[int, tuple[int, str]] = {}
    blobs: dict[str, int] = {}
    drafts: dict[int, tuple[int, dict[str, Any]]] = {}
    status: dict[int, tuple[int, str]] = {}
    decisions: dict[int, tuple[int, dict[str, Any]]] = {}
    edits: dict[int, tuple[int, str]] = {}
    for seq, type_, payload in _payloads(
            session, "payload.received", "evidence.stored", "draft.created",
            "draft.superseded", "draft.approved", "draft.rejected", "draft.edited"):
        if type_ == "payload.received":
            received[payload["received_id"]] = (seq, payload["body_sha256"])
        elif type_ == "evidence.stored":
            blobs[payload["sha256"]] = seq
        elif type_ == "draft.created":
            drafts[payload["draft_id"]] = (seq, payload)
            status[payload["draft_id"]] = (seq, "pending")
        elif type_ == "draft.edited":
            edits[payload["draft_id"]] = (seq, payload["edited_sha256"])
        else:
            status[payload["draft_id"]] = (seq, type_.removeprefix("draft."))
            if type_ != "draft.superseded":
                decisions[payload["draft_id"]] = (seq, payload)

    seen: set[int] = set()
    for rid, digest, body in session.execute(
            select(Received.id, Received.body_sha256, Received.body)
            .execution_options(yield_per=200)):
        seen.add(rid)
        if rid not in received:
            problems.append((0, f"received #{rid} has no payload.received event (inserted "
                                "behind the log)"))
            continue
        seq, recorded = received[rid]
        if digest != recorded or (body is not None and sha256_hex(body) != recorded):
            problems.append((seq, f"received #{rid} body does not match the digest in "
                                  f"event #{seq} (edited)"))
    problems += [(seq, f"received #{rid} named by event #{seq} is missing (deleted)")
                 for rid, (seq, _) in received.items() if rid not in seen]

    for digest, content in session.execute(
            select(EvidenceBlob.sha256, EvidenceBlob.content)
            .execution_options(yield_per=200)):
        seq = blobs.get(digest, 0)
        if content is not None and sha256_hex(content) != digest:
            problems.append((seq, f"evidence blob {digest[:16]} content was edited"))

    draft_ids: set[int] = set()
    for draft in session.scalars(select(DraftRow).execution_options(yield_per=200)):
        draft_ids.add(draft.id)
        if draft.id not in drafts:
            problems.append((0, f"draft #{draft.id} has no draft.created event (inserted "
                                "behind the log)"))
            continue
        seq, created = drafts[draft.id]
        if (sha256_hex(draft.markdown) != created["markdown_sha256"]
                or sha256_hex(canonical_json(draft.content)) != created["content_sha256"]
                or draft.model != created["model"]):
            problems.append((seq, f"draft #{draft.id} text or model does not match event "
                                  f"#{seq} (edited)"))
        status_seq, expected = status[draft.id]
        if draft.status != expected:
            problems.append((status_seq, f"draft #{draft.id} is {draft.status} but event "
                                         f"#{status_seq} made it {expected} (edited)"))
    problems += [(seq, f"draft #{did} named by event #{seq} is missing (deleted)")
                 for did, (seq, _) in drafts.items() if did not in draft_ids]

    decided: set[int] = set()
    for dec in session.scalars(select(DecisionRow).execution_options(yield_per=200)):
        decided.add(dec.draft_id)
        if dec.draft_id not in decisions:
            problems.append((0, f"decision #{dec.id} on draft #{dec.draft_id} has no event "
                                "(inserted behind the log)"))
            continue
        seq, fact = decisions[dec.draft_id]
        edit = edits.get(dec.draft_id)
        if (dec.id != fact["decision_id"] or dec.actor != fact["actor"]
                or dec.action != fact["action"] or dec.reason != fact.get("reason")
                or (edit is not None and (dec.edited_markdown is None or
                                          sha256_hex(dec.edited_markdown) != edit[1]))):
            problems.append((seq, f"decision on draft #{dec.draft_id} does not match event "
                                  f"#{seq} (edited)"))
    problems += [(seq, f"decision on draft #{did} recorded by event #{seq} is missing "
                       "(deleted)") for did, (seq, _) in decisions.items() if did not in decided]
    problems.sort(key=lambda item: item[0])
    return problems
