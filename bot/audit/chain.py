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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.audit.models import GENESIS_HASH, ChainHead, Event

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
    """Walk every event in ``seq`` order; stream rows so a long log stays cheap."""
    head = session.get(ChainHead, HEAD_ID)
    events = session.scalars(
        select(Event).order_by(Event.seq).execution_options(yield_per=1000)
    )
    try:
        return check_events(events, head=head)
    finally:
        events.close()  # the walk may stop early; release the (server-side) cursor now
