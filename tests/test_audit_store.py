"""The audit store: raw payloads, incidents, drafts, supersession, and the chain they leave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.audit.models import Received
from bot.audit.store import AuditStore
from bot.domain import Alert, Draft, DraftKind, DraftStatus


class FakeClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


def checkout_alert(**extra: object) -> Alert:
    fields: dict[str, object] = {
        "name": "CheckoutHighErrorRate", "fingerprint": "fp-checkout",
        "labels": {"service": "checkout", "namespace": "shop", "severity": "critical"},
        "summary": "checkout 5xx ratio above 5%",
    }
    fields.update(extra)
    return Alert.model_validate(fields)


def triage_draft(incident_id: int | None, text: str = "## Triage\nPool exhausted [E1]") -> Draft:
    return Draft(kind=DraftKind.TRIAGE, incident_id=incident_id, content={"summary": text},
                 markdown=text, model="evidence-only", prompt_template="triage.j2",
                 prompt_hash="a" * 64, params={"temperature": 0.1, "seed": 7},
                 prompt_tokens=120, completion_tokens=80, cost_usd=0.0012, latency_ms=812.5,
                 evidence_refs=("E1", "R1"), grounding_score=0.93, cache_key="ck-1",
                 notes=("no traces",), channel="C1")


def test_raw_payload_is_kept_verbatim_and_idempotent(any_store: AuditStore) -> None:
    body = b'{"groupKey": "{}:{alertname=\\"CheckoutHighErrorRate\\"}", "x": "\xc3\xa9"}'
    first = any_store.record_received(source="alertmanager", body=body,
                                      headers={"Content-Type": "application/json"},
                                      idempotency_key="am:g1:h1")
    again = any_store.record_received(source="alertmanager", body=body, headers={},
                                      idempotency_key="am:g1:h1")
    other = any_store.record_received(source="alertmanager", body=body, headers={})
    assert again == first and other != first
    row = any_store.get_received(received_id=first)
    assert row.body == body and row.headers == {"Content-Type": "application/json"}
    assert row.status == "received"
    # The retry wrote nothing: one event per distinct payload.
    assert [e.type for e in any_store.events()] == ["payload.received", "payload.received"]


def test_failed_processing_stays_visible(any_store: AuditStore) -> None:
    rid = any_store.record_received(source="slack", body=b"not json", headers={})
    any_store.mark_received(received_id=rid, status="failed", error="unparseable payload")
    row = any_store.get_received(received_id=rid)
    assert (row.status, row.error) == ("failed", "unparseable payload")
    assert [e.type for e in any_store.events(subject=f"received:{rid}")] == [
        "payload.received", "payload.failed"]


def test_repeats_within_window_join_one_incident(db_url: str) -> None:
    from bot.audit.schema import make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine)
    clock = FakeClock()
    audit = AuditStore(engine=engine, clock=clock)
    try:
        rid = audit.record_received(source="alertmanager", body=b"{}", headers={})
        first, created = audit.open_incident(alert=checkout_alert(received_id=rid),
                                             window_s=3600)
        assert created and first.title == "checkout 5xx ratio above 5%"
        clock.moment += timedelta(minutes=30)
        second, created = audit.open_incident(alert=checkout_alert(), window_s=3600)
        assert not created and second.id == first.id and second.alert_count == 2
        clock.moment += timedelta(hours=2)  # quiet longer than the window: a new incident
        third, created = audit.open_incident(alert=checkout_alert(), window_s=3600)
        assert created and third.id != first.id
        resolved, created = audit.open_incident(alert=checkout_alert(status="resolved"),
                                                window_s=3600)
        assert not created and resolved.id == third.id and resolved.status == "resolved"
        assert [a.received_id for a in audit.alerts_for(incident_id=first.id)] == [rid, None]
        assert audit.verify().ok
    finally:
        audit.close()


def test_draft_round_trips_every_field(any_store: AuditStore) -> None:
    incident, _ = any_store.open_incident(alert=checkout_alert(), window_s=3600)
    saved = any_store.save_draft(draft=triage_draft(incident.id))
    assert saved.id is not None and saved.status is DraftStatus.PENDING
    loaded = any_store.get_draft(draft_id=saved.id)
    assert loaded == saved
    assert loaded.model_dump(exclude={"id"}) == triage_draft(incident.id).model_dump(
        exclude={"id", "created_at"}) | {"created_at": loaded.created_at}
    assert any_store.cached_draft(cache_key="ck-1") == saved
    assert any_store.cached_draft(cache_key="nope") is None
    with pytest.raises(KeyError):
        any_store.get_draft(draft_id=999)


def test_newer_draft_supersedes_older_pending_of_same_kind(any_store: AuditStore) -> None:
    incident, _ = any_store.open_incident(alert=checkout_alert(), window_s=3600)
    old = any_store.save_draft(draft=triage_draft(incident.id, "old"))
    postmortem = any_store.save_draft(draft=triage_draft(incident.id, "pm").model_copy(
        update={"kind": DraftKind.POSTMORTEM}))
    new = any_store.save_draft(draft=triage_draft(incident.id, "new"))
    assert old.id is not None and new.id is not None and postmortem.id is not None
    assert any_store.get_draft(draft_id=old.id).status is DraftStatus.SUPERSEDED
    assert any_store.superseded_by(draft_id=old.id) == new.id
    # A different kind is a different question: not superseded.
    assert any_store.get_draft(draft_id=postmortem.id).status is DraftStatus.PENDING
    pending = any_store.list_drafts(status=DraftStatus.PENDING)
    assert [d.id for d in pending] == [new.id, postmortem.id]


def test_chain_references_bodies_by_digest_so_purging_keeps_it_valid(
        any_store: AuditStore) -> None:
    body = b"secret-ish raw alert body " * 100
    rid = any_store.record_received(source="alertmanager", body=body, headers={})
    blob = any_store.put_blob(content=b"raw log excerpt")
    events = list(any_store.events())
    assert all(b"secret-ish" not in str(e.payload).encode() for e in events)
    assert events[0].payload["body_sha256"] == any_store.get_received(
        received_id=rid).body_sha256
    # What the retention job (issue 7) will do: drop raw bodies, keep digests.
    with any_store.read() as session, session.begin():
        row = session.get(Received, rid)
        assert row is not None
        row.body = None
        session.execute(select(Received.id))
    from bot.audit.models import EvidenceBlob

    with any_store.read() as session, session.begin():
        blob_row = session.get(EvidenceBlob, blob)
        assert blob_row is not None
        blob_row.content = None
    assert any_store.get_received(received_id=rid).body is None
    assert any_store.get_blob(sha256=blob) is None
    assert any_store.verify().ok


def test_concurrent_writers_keep_one_linear_chain(any_store: AuditStore) -> None:
    import threading

    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def burst(n: int) -> None:
        barrier.wait()
        try:
            for i in range(10):
                any_store.record_received(source="slack", body=f"{n}-{i}".encode(), headers={},
                                          idempotency_key=f"k{i % 5}-{n % 2}")
                any_store.put_blob(content=f"log line {i}".encode())
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    report = any_store.verify()
    # 10 distinct idempotency keys -> 10 payloads; 10 distinct blobs.
    assert report.ok and report.events == 20, report
