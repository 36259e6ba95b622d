"""The job table and scheduler: schedules in frozen time, one run per slot across replicas,
coalesced catch-up after downtime, and retention that keeps the audit chain valid."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from bot.audit.schema import make_engine, upgrade
from bot.audit.store import AuditStore
from bot.domain import Draft, DraftKind
from bot.jobs import (
    JobContext,
    JobRun,
    JobSpec,
    build_scheduler,
    claims_of,
    cron_trigger,
    execute,
    expand,
    previous_period,
    start_scheduler,
    stop_scheduler,
)
from bot.services import Services
from bot.settings import Settings

SAT = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)  # a Saturday


class Recorder:
    """A job function that remembers every slot it ran for (thread-safe)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, datetime, timedelta | None]] = []
        self.lock = threading.Lock()
        self.ran = threading.Event()

    def __call__(self, run: JobRun) -> str:
        with self.lock:
            self.runs.append((run.job_id, run.slot, run.window))
        self.ran.set()
        return f"ran {run.slot.isoformat()}"


def table(recorder: Recorder, cron: str) -> dict[str, JobSpec]:
    return {"tick": JobSpec(name="tick", func=recorder, crons=lambda s: [cron],
                            description="test job")}


# --- schedules ---------------------------------------------------------------------------


def _migrated(url: str) -> str:
    """The database at the head revision, as `hotwash db upgrade` leaves it: the migrations
    create the scheduler's tables, not the scheduler."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


def test_crontab_weekday_numbers_follow_crontab_not_apscheduler() -> None:
    # crontab: 1 = Monday. APScheduler 3's own numbering would make this a Tuesday.
    monday_nine = cron_trigger("0 9 * * 1")
    assert monday_nine.get_next_fire_time(None, SAT) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    sunday = cron_trigger("0 9 * * 0")
    assert sunday.get_next_fire_time(None, SAT) == datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    assert cron_trigger("0 9 * * 7").get_next_fire_time(None, SAT) == datetime(
        2026, 11, 29, 9, 0, tzinfo=UTC)
    weekdays = cron_trigger("30 6 * * 1-5")
    assert weekdays.get_next_fire_time(None, SAT) == datetime(2026, 11, 30, 6, 30, tzinfo=UTC)


def test_bad_cron_names_the_expression() -> None:
    with pytest.raises(ValueError, match="0 9 \\* \\*"):
        cron_trigger("0 9 * *")


def test_digest_window_is_the_gap_between_slots() -> None:
    slot = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    assert previous_period(cron_trigger("0 * * * *"), slot) == timedelta(hours=1)
    assert previous_period(cron_trigger("0 9 * * *"), slot) == timedelta(days=1)


def test_table_expands_per_channel_and_per_schedule() -> None:
    settings = Settings(alert_channels=["C1", "C2"], digest_cron="0 * * * *; 0 9 * * *",
                        reindex_cron="*/15 * * * *", retention_cron="17 3 * * *")
    from bot.jobs import JOBS

    rows = {row.job_id: row for row in expand(table=JOBS, settings=settings)}
    assert set(rows) == {"digest:C1", "digest:C1:1", "digest:C2", "digest:C2:1",
                         "reindex", "retention"}
    assert rows["digest:C2:1"].cron == "0 9 * * *"
    assert rows["digest:C2:1"].params == {"channel": "C2"}


def test_next_fire_times_in_frozen_time(tmp_path: Path) -> None:
    settings = Settings(database_url=_migrated(f"sqlite:///{tmp_path / 'jobs.db'}"),
                        alert_channels=["C1"], digest_cron="0 * * * *; 0 9 * * *")
    from bot.jobs import JOBS

    context = JobContext(settings=settings, table=JOBS)
    with time_machine.travel(SAT + timedelta(minutes=1), tick=False):
        scheduler = build_scheduler(context=context, engine=make_engine(
            settings.effective_database_url))
        scheduler.start(paused=True)
        try:
            from bot.jobs import sync_jobs

            sync_jobs(scheduler=scheduler, context=context)
            nxt = {job.id: job.next_run_time for job in scheduler.get_jobs()}
        finally:
            stop_scheduler(scheduler)
    assert nxt == {
        "digest:C1": datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
        "digest:C1:1": datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
        "reindex": datetime(2026, 11, 28, 8, 45, tzinfo=UTC),
        "retention": datetime(2026, 11, 29, 3, 17, tzinfo=UTC),
    }


# --- missed runs after downtime: coalesce, run once --------------------------------------


def _run_scheduler_at(moment: datetime, *, url: str, context: JobContext,
                      expect_run: bool, recorder: Recorder) -> dict[str, Any]:
    with time_machine.travel(moment, tick=False):
        recorder.ran.clear()
        scheduler = build_scheduler(context=context, engine=make_engine(url), owner="r1")
        start_scheduler(scheduler=scheduler, context=context)
        try:
            ran = recorder.ran.wait(timeout=5 if expect_run else 0.5)
            time.sleep(0.2)  # let the run be recorded before shutting down
            job = scheduler.get_job("tick")
            return {"ran": ran, "next": job.next_run_time,
                    "records": claims_of(scheduler).recent()}
        finally:
            stop_scheduler(scheduler)


def test_downtime_coalesces_missed_runs_into_one(tmp_path: Path) -> None:
    url = _migrated(f"sqlite:///{tmp_path / 'jobs.db'}")
    recorder = Recorder()
    context = JobContext(settings=Settings(database_url=url), table=table(recorder, "0 * * * *"))

    first = _run_scheduler_at(SAT, url=url, context=context, expect_run=False,
                              recorder=recorder)
    assert not first["ran"] and first["next"] == datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

    # A restart within the hour: nothing is due, nothing runs, the stored time survives.
    again = _run_scheduler_at(SAT + timedelta(minutes=10), url=url, context=context,
                              expect_run=False, recorder=recorder)
    assert not again["ran"] and again["next"] == datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

    # Down from 08:40 until 11:20: 09:00, 10:00 and 11:00 were missed -> one run, for 11:00.
    back = _run_scheduler_at(datetime(2026, 11, 28, 11, 20, tzinfo=UTC), url=url,
                             context=context, expect_run=True, recorder=recorder)
    assert back["ran"]
    assert recorder.runs == [("tick", datetime(2026, 11, 28, 11, 0, tzinfo=UTC),
                              timedelta(hours=1))]
    assert back["next"] == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    [record] = back["records"]
    assert (record.job_id, record.status, record.owner) == ("tick", "ok", "r1")
    assert record.outcome == "ran 2026-11-28T11:00:00+00:00"


def test_changed_schedule_replaces_the_stored_job(tmp_path: Path) -> None:
    url = _migrated(f"sqlite:///{tmp_path / 'jobs.db'}")
    recorder = Recorder()
    hourly = JobContext(settings=Settings(database_url=url), table=table(recorder, "0 * * * *"))
    _run_scheduler_at(SAT, url=url, context=hourly, expect_run=False, recorder=recorder)
    quarter = JobContext(settings=Settings(database_url=url),
                         table=table(recorder, "*/15 * * * *"))
    result = _run_scheduler_at(SAT + timedelta(minutes=1), url=url, context=quarter,
                               expect_run=False, recorder=recorder)
    assert result["next"] == datetime(2026, 11, 28, 8, 45, tzinfo=UTC)


def test_failing_job_is_recorded_as_error(tmp_path: Path) -> None:
    url = _migrated(f"sqlite:///{tmp_path / 'jobs.db'}")
    done = threading.Event()

    def boom(run: JobRun) -> str:
        done.set()
        raise RuntimeError("slack is down")

    context = JobContext(settings=Settings(database_url=url),
                         table={"tick": JobSpec(name="tick", func=boom,
                                                crons=lambda s: ["0 * * * *"],
                                                description="fails")})
    scheduler = build_scheduler(context=context, engine=make_engine(url), owner="r1")
    with time_machine.travel(SAT, tick=False):
        start_scheduler(scheduler=scheduler, context=context)
        try:
            scheduler.modify_job("tick", next_run_time=SAT - timedelta(minutes=30))
            scheduler.wakeup()
            assert done.wait(5)
            for _ in range(50):
                records = claims_of(scheduler).recent()
                if records and records[0].status != "running":
                    break
                time.sleep(0.05)
        finally:
            stop_scheduler(scheduler)
    assert records[0].status == "error"
    assert "slack is down" in (records[0].outcome or "")


# --- several replicas, one run per slot -------------------------------------------------


def _two_replicas(url: str) -> tuple[Counter[datetime], int]:
    recorder = Recorder()
    context = JobContext(settings=Settings(database_url=url),
                         table=table(recorder, "* * * * * *"))  # every second
    a = build_scheduler(context=context, engine=make_engine(url), owner="replica-a")
    b = build_scheduler(context=context, engine=make_engine(url), owner="replica-b")
    start_scheduler(scheduler=a, context=context)
    start_scheduler(scheduler=b, context=context)
    try:
        time.sleep(4.5)
    finally:
        stop_scheduler(a)
        stop_scheduler(b)
    per_slot = Counter(slot for _, slot, _ in recorder.runs)
    lost = claims_of(a).lost + claims_of(b).lost
    return per_slot, lost


@pytest.mark.slow
def test_two_schedulers_on_sqlite_run_each_slot_once(tmp_path: Path) -> None:
    per_slot, _ = _two_replicas(_migrated(f"sqlite:///{tmp_path / 'jobs.db'}"))
    assert len(per_slot) >= 3
    assert set(per_slot.values()) == {1}, per_slot


@pytest.mark.postgres
@pytest.mark.slow
def test_two_schedulers_on_one_postgres_database_run_each_slot_once(pg_url: str) -> None:
    per_slot, lost = _two_replicas(_migrated(pg_url))
    assert len(per_slot) >= 3
    assert set(per_slot.values()) == {1}, per_slot
    print(f"slots run: {len(per_slot)}, claims lost to the other replica: {lost}")


def test_claim_is_exclusive_per_slot(tmp_path: Path) -> None:
    from bot.jobs import RunClaims

    url = _migrated(f"sqlite:///{tmp_path / 'jobs.db'}")
    a, b = RunClaims(engine=make_engine(url)), RunClaims(engine=make_engine(url))
    slot = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    try:
        assert a.claim(job_id="digest:C1", slot=slot, owner="a")
        assert not b.claim(job_id="digest:C1", slot=slot, owner="b")
        assert b.claim(job_id="digest:C1", slot=slot + timedelta(hours=1), owner="b")
        assert b.claim(job_id="digest:C2", slot=slot, owner="b")
        assert b.lost == 1
    finally:
        a.engine.dispose()
        b.engine.dispose()


# --- retention -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def _services(settings: Settings, store: AuditStore) -> Services:
    # Retention needs only the store; the other rooms are not wired in this test.
    return Services(settings=settings, store=store, runbooks=None,  # type: ignore[arg-type]
                    logs=None, models=[])  # type: ignore[arg-type]


def test_retention_purges_old_raw_bodies_and_keeps_the_chain_valid(store: AuditStore) -> None:
    settings = Settings(retention_days=30)
    old_day = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
    store.clock = FakeClock(old_day)
    old = store.record_received(source="alertmanager", body=b'{"old": true}', headers={})
    old_blob = store.put_blob(content=b"ERROR HikariPool-1 - Connection is not available")
    draft = store.save_draft(draft=Draft(kind=DraftKind.TRIAGE, content={"s": 1},
                                         markdown="## Triage [E1]", model="evidence-only",
                                         created_at=old_day))
    store.clock = FakeClock(old_day + timedelta(days=40))
    recent = store.record_received(source="alertmanager", body=b'{"new": true}', headers={})
    recent_blob = store.put_blob(content=b"WARN upstream 503")

    slot = datetime(2026, 11, 10, 3, 17, tzinfo=UTC)
    context = JobContext(settings=settings, services=_services(settings, store))
    outcome = execute(name="retention", job_id="retention", slot=slot, params={},
                      context=context)

    assert outcome.startswith("purged 1 raw payload bodies and 1 evidence blobs")
    assert store.get_received(received_id=old).body is None
    assert store.get_received(received_id=old).body_sha256  # the digest stays citable
    assert store.get_received(received_id=recent).body == b'{"new": true}'
    assert store.get_blob(sha256=old_blob) is None
    assert store.get_blob(sha256=recent_blob) == b"WARN upstream 503"
    assert store.get_draft(draft_id=draft.id or 0).markdown == "## Triage [E1]"
    report = store.verify()
    assert report.ok, report.reason
    assert [e.type for e in store.events(subject="retention")] == ["retention.purged"]

    # Running it again purges nothing more and the chain still verifies.
    again = execute(name="retention", job_id="retention", slot=slot, params={},
                    context=context)
    assert again.startswith("purged 0 raw payload bodies and 0 evidence blobs")
    assert store.verify().ok


# --- incremental runbook re-index ---------------------------------------------------------


@pytest.mark.slow
def test_reindex_embeds_only_changed_runbooks_and_swaps_the_live_index(
        tmp_path: Path, store: AuditStore) -> None:
    books = tmp_path / "runbooks"
    books.mkdir()
    (books / "db-pool.md").write_text(
        "# DB connection pool exhaustion\n\n## Diagnosis\n\nLook for HikariPool timeouts.\n")
    (books / "disk.md").write_text("# Disk full\n\n## Mitigation\n\nDelete old logs.\n")
    settings = Settings(data_dir=tmp_path / "data", runbooks_dir=books)
    services = _services(settings, store)
    context = JobContext(settings=settings, services=services)
    slot = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

    def run() -> str:
        return execute(name="reindex", job_id="reindex", slot=slot, params={}, context=context)

    assert run() == ("runbooks: 2 re-embedded, 0 unchanged, 0 removed, 0 problem(s); "
                     "index reloaded")
    first_index = services.runbooks
    assert run() == "runbooks: 0 re-embedded, 2 unchanged, 0 removed, 0 problem(s)"
    assert services.runbooks is first_index  # nothing changed: no reload

    (books / "disk.md").write_text("# Disk full\n\n## Mitigation\n\nExpand the volume.\n")
    (books / "db-pool.md").unlink()
    assert run() == ("runbooks: 1 re-embedded, 0 unchanged, 1 removed, 0 problem(s); "
                     "index reloaded")
    assert services.runbooks is not first_index
    assert [m.id for m in services.runbooks.match("disk full expand volume")] == ["disk"]
