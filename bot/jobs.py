"""Scheduled jobs: one table of plain named functions, run by APScheduler.

The table
---------
:data:`JOBS` is the only list of scheduled work. Each :class:`JobSpec` names a plain
function ``fn(run: JobRun) -> str`` (the returned line is recorded as the run's outcome)
and the cron schedule(s) it follows, read from :class:`~bot.settings.Settings`:

``digest``     per alert channel, ``HOTWASH_DIGEST_CRON`` (several crons separated by
               ``;``, e.g. ``"0 * * * *; 0 9 * * *"`` for hourly and daily digests). The
               window of a run is the interval between its slot and the slot before it.
``reindex``    incremental runbook re-index, ``HOTWASH_REINDEX_CRON``.
``retention``  purge raw payload bodies / raw log evidence older than
               ``HOTWASH_RETENTION_DAYS`` (drafts, decisions and the hash chain are kept),
               ``HOTWASH_RETENTION_CRON``.

Cron expressions use the crontab convention (day of week 0 or 7 = Sunday; APScheduler 3
itself counts 0 = Monday, so :func:`cron_trigger` translates). A sixth leading field is
accepted for seconds. All schedules are in UTC.

Several replicas, one run
-------------------------
Jobs live in a ``SQLAlchemyJobStore`` on the same database as the audit log, so every
replica sees the same schedule. APScheduler 3 does not lock a shared job store: two
schedulers that wake up together both read the same due job. So every submission first
*claims* its slot, an ``INSERT`` into ``hotwash_job_runs`` whose primary key is
``(job_id, slot)``; the database lets exactly one replica win, the others skip. The slot
is the scheduled fire time (not the wall clock), identical on every replica. This makes
each slot *at most once*: a replica that dies mid-run leaves its claim ``running`` (visible
in ``hotwash jobs list``) and the slot is not retried; the next slot runs normally.

Missed runs after downtime
--------------------------
Policy: **coalesce, run once.** Every job has ``coalesce=True``, ``max_instances=1`` and
``misfire_grace_time=None`` (no limit). When the process comes back after downtime, all
the missed fire times of a job collapse into one run for the latest missed slot, however
late it is; the runs before it are skipped (a digest then covers only the latest window).
Start-up keeps an existing job row whose trigger is unchanged, so its stored
``next_run_time`` survives restarts; re-adding it would silently drop the missed run.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import (
    Engine,
    desc,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from bot.audit.models import job_runs, scheduler_jobs
from bot.audit.schema import make_engine
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.ports import SlackPoster
    from bot.services import Services

log = logging.getLogger(__name__)

MISFIRE_GRACE_TIME: int | None = None  # no limit: with coalesce, "run once, however late"


# --- the table -----------------------------------------------------------------------


@dataclass(frozen=True)
class JobRun:
    """One execution of a named job: what a job function receives."""

    name: str
    job_id: str
    slot: datetime  # the scheduled fire time (UTC), not the wall clock
    params: Mapping[str, str]
    context: JobContext
    window: timedelta | None = None  # digests: the interval that ends at ``slot``


@dataclass(frozen=True)
class JobSpec:
    """A named job: its function and where its schedule comes from."""

    name: str
    func: Callable[[JobRun], str]
    crons: Callable[[Settings], Sequence[str]]
    description: str
    per_channel: bool = False


@dataclass
class JobContext:
    """What job functions may use. Services are wired by the composition root."""

    settings: Settings
    table: Mapping[str, JobSpec] = field(default_factory=lambda: JOBS)
    services: Services | None = None
    slack: SlackPoster | None = None

    def need_services(self) -> Services:
        """The wired services; a job that needs them fails loudly without them."""
        if self.services is None:
            raise RuntimeError("this job needs services; build the JobContext with services=")
        return self.services


def split_crons(value: str) -> list[str]:
    """``"0 * * * *; 0 9 * * *"`` -> two cron expressions (blank parts ignored)."""
    return [part.strip() for part in value.split(";") if part.strip()]


def _digest(run: JobRun) -> str:
    from bot.digest import post_digest

    return post_digest(run=run)


def _reindex(run: JobRun) -> str:
    return reindex_runbooks(run=run)


def _retention(run: JobRun) -> str:
    return purge_expired(run=run)


JOBS: Mapping[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            name="digest",
            func=_digest,
            crons=lambda s: split_crons(s.digest_cron),
            description="Post window stats to each alert channel.",
            per_channel=True,
        ),
        JobSpec(
            name="reindex",
            func=_reindex,
            crons=lambda s: split_crons(s.reindex_cron),
            description="Re-index changed runbooks (incremental).",
        ),
        JobSpec(
            name="retention",
            func=_retention,
            crons=lambda s: split_crons(s.retention_cron),
            description="Purge raw payloads and raw log evidence past retention.",
        ),
    )
}


# --- the job functions that live here (digests live in bot.digest) ------------------


def reindex_runbooks(*, run: JobRun) -> str:
    """Incremental re-index: only runbooks whose bytes changed are re-embedded. When
    something changed, the running process's runbook index is swapped for the fresh one."""
    from bot.retrieval import sync_and_open

    index, stats = sync_and_open(settings=run.context.settings)
    swapped = False
    if run.context.services is not None and (stats.embedded or stats.removed):
        # One attribute assignment: a triage in flight keeps the index it already holds.
        run.context.services.runbooks = index
        swapped = True
    return (f"runbooks: {stats.embedded} re-embedded, {stats.unchanged} unchanged, "
            f"{stats.removed} removed, {len(stats.problems)} problem(s)"
            + ("; index reloaded" if swapped else ""))


def purge_expired(*, run: JobRun) -> str:
    """Retention: drop raw payload bodies and raw log evidence older than
    ``retention_days`` (relative to the run's slot). Rows, digests, drafts, decisions and
    events stay, so the hash chain, which only ever cites digests, still verifies."""
    from bot.audit.chain import append_event
    from bot.audit.models import EvidenceBlob, Received

    store = run.context.need_services().store
    cutoff = run.slot - timedelta(days=run.context.settings.retention_days)
    now = store.now()
    with store.write() as session:
        bodies = session.execute(
            update(Received)
            .where(Received.received_at < cutoff, Received.body.is_not(None))
            .values(body=None, purged_at=now)
            .execution_options(synchronize_session=False)
        )
        blobs = session.execute(
            update(EvidenceBlob)
            .where(EvidenceBlob.created_at < cutoff, EvidenceBlob.content.is_not(None))
            .values(content=None, purged_at=now)
            .execution_options(synchronize_session=False)
        )
        purged = {"received_bodies": int(getattr(bodies, "rowcount", 0) or 0),
                  "evidence_blobs": int(getattr(blobs, "rowcount", 0) or 0)}
        append_event(session, type="retention.purged", subject="retention", at=now,
                     payload={"cutoff": cutoff.isoformat(), "job_id": run.job_id, **purged})
    return (f"purged {purged['received_bodies']} raw payload bodies and "
            f"{purged['evidence_blobs']} evidence blobs older than {cutoff.isoformat()}")


# --- schedules -------------------------------------------------------------------------

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_dow(field_value: str) -> str:
    """Crontab day-of-week numbers (0/7 = Sunday) -> names, which APScheduler 3 reads
    unambiguously (its own numbers start at Monday)."""

    def day(token: str) -> str:
        return _CRON_DAYS[int(token) % 7] if token.isdigit() else token

    parts = []
    for item in field_value.split(","):
        rng, _, step = item.partition("/")
        if "-" in rng:
            lo, hi = rng.split("-", 1)
            if lo.isdigit() and hi.isdigit() and int(hi) == 7 and int(lo) > 0:
                # "5-7" is Fri..Sun in crontab; names cannot wrap, so list the tail.
                rng = f"{day(lo)}-sat,sun"
                parts.append(rng if not step else item)
                continue
            rng = f"{day(lo)}-{day(hi)}"
        else:
            rng = day(rng)
        parts.append(f"{rng}/{step}" if step else rng)
    return ",".join(parts)


def cron_trigger(expr: str) -> CronTrigger:
    """A UTC trigger from a crontab expression (5 fields, or 6 with leading seconds)."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"cron {expr!r}: expected 5 fields (or 6 with seconds)")
    second, minute, hour, day, month, dow = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_crontab_dow(dow),
        timezone=UTC,
    )


def previous_period(trigger: CronTrigger, slot: datetime) -> timedelta:
    """Length of the window that ends at ``slot``: the gap to the trigger's next slot.

    For regular crons (hourly, daily) the gap after a slot equals the gap before it."""
    nxt = trigger.get_next_fire_time(slot, slot + timedelta(microseconds=1))
    if nxt is None:
        return timedelta(hours=1)
    gap: timedelta = nxt - slot
    return gap


@dataclass(frozen=True)
class ScheduledJob:
    """One row the job store should hold: table entry x schedule x channel."""

    job_id: str
    name: str
    cron: str
    params: dict[str, str]


def expand(*, table: Mapping[str, JobSpec], settings: Settings) -> list[ScheduledJob]:
    """Every scheduled row implied by the table and settings (ids are stable)."""
    rows: list[ScheduledJob] = []
    for spec in table.values():
        crons = list(spec.crons(settings))
        targets: list[dict[str, str]] = (
            [{"channel": c} for c in settings.alert_channels] if spec.per_channel else [{}]
        )
        for params in targets:
            for index, cron in enumerate(crons):
                parts = [spec.name, *params.values()] + ([str(index)] if index else [])
                rows.append(ScheduledJob(":".join(parts), spec.name, cron, dict(params)))
    return rows


# --- claims: one replica per slot ------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """One claimed run, as `hotwash jobs list` shows it."""

    job_id: str
    slot: datetime
    owner: str
    status: str
    outcome: str | None
    finished_at: datetime | None


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class RunClaims:
    """The ``hotwash_job_runs`` table: who ran which slot, and how it went."""

    def __init__(self, *, engine: Engine) -> None:
        self.engine = engine
        self.lost = 0  # claims this process lost to another replica (observability/tests)

    def claim(self, *, job_id: str, slot: datetime, owner: str) -> bool:
        """True when this owner won ``slot``; False when another replica already has it."""
        row = {
            "job_id": job_id,
            "slot": slot.astimezone(UTC),
            "owner": owner,
            "claimed_at": datetime.now(UTC),
            "status": "running",
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(job_runs.insert().values(**row))
        except IntegrityError:
            self.lost += 1
            return False
        return True

    def finish(self, *, job_id: str, slot: datetime, status: str, outcome: str) -> None:
        """Record how a claimed run ended."""
        stmt = (
            update(job_runs)
            .where(job_runs.c.job_id == job_id, job_runs.c.slot == slot.astimezone(UTC))
            .values(status=status, outcome=outcome[:2000], finished_at=datetime.now(UTC))
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def recent(self, *, job_id: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Latest runs first."""
        stmt = select(job_runs).order_by(desc(job_runs.c.slot)).limit(limit)
        if job_id is not None:
            stmt = stmt.where(job_runs.c.job_id == job_id)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            RunRecord(
                job_id=r["job_id"],
                slot=_aware(r["slot"]) or r["slot"],
                owner=r["owner"],
                status=r["status"],
                outcome=r["outcome"],
                finished_at=_aware(r["finished_at"]),
            )
            for r in rows
        ]


# --- execution ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Current:
    context: JobContext
    job_id: str
    slot: datetime
    window: timedelta
    claims: RunClaims


_current: ContextVar[_Current] = ContextVar("hotwash_job")


def run_scheduled(name: str, **params: str) -> str:
    """The function every job-store row points at; dispatches to the table by name.

    Stored by reference (``bot.jobs:run_scheduled``), so rows survive code changes as long
    as the name stays in :data:`JOBS`."""
    current = _current.get()
    try:
        outcome = execute(
            name=name,
            job_id=current.job_id,
            slot=current.slot,
            params=params,
            context=current.context,
            window=current.window,
        )
    except Exception as exc:
        current.claims.finish(
            job_id=current.job_id, slot=current.slot, status="error", outcome=repr(exc)
        )
        raise
    current.claims.finish(job_id=current.job_id, slot=current.slot, status="ok", outcome=outcome)
    return outcome


def execute(
    *,
    name: str,
    job_id: str,
    slot: datetime,
    params: Mapping[str, str],
    context: JobContext,
    window: timedelta | None = None,
) -> str:
    """Run one named job from the table now (used by the scheduler and `hotwash jobs run`)."""
    spec = context.table.get(name)
    if spec is None:
        raise KeyError(f"no job named {name!r}; known: {', '.join(sorted(context.table))}")
    if window is None:
        crons = list(spec.crons(context.settings))
        window = previous_period(cron_trigger(crons[0]), slot) if crons else None
    run = JobRun(name=name, job_id=job_id, slot=slot, params=params, context=context,
                 window=window)
    log.info("job %s starting (slot %s)", job_id, slot.isoformat())
    return spec.func(run)


class ClaimingExecutor(BaseExecutor):  # type: ignore[misc]
    """A thread-pool executor that claims each slot in SQL before running it."""

    def __init__(self, *, claims: RunClaims, context: JobContext, owner: str,
                 max_workers: int = 2) -> None:
        super().__init__()
        self._claims = claims
        self._context = context
        self._owner = owner
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers, thread_name_prefix="hotwash-job"
        )
        self._closed = False

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        if self._closed:
            # APScheduler 3 processes due jobs once more while shutting down; claiming
            # then would leave a slot claimed that nobody runs.
            log.warning("job %s not started: scheduler is shutting down", job.id)
            return
        # Claim before anything is counted: a lost claim means another replica runs it.
        if not self._claims.claim(job_id=job.id, slot=run_times[-1], owner=self._owner):
            log.info("job %s slot %s already claimed by another replica", job.id,
                     run_times[-1].isoformat())
            return
        super().submit_job(job, run_times)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        slot = run_times[-1]
        current = _Current(self._context, job.id, slot, previous_period(job.trigger, slot),
                           self._claims)

        def work() -> Any:
            token = _current.set(current)
            try:
                return run_job(job, job._jobstore_alias, run_times, self._logger.name)
            finally:
                _current.reset(token)

        future = self._pool.submit(work)

        def done(f: concurrent.futures.Future[Any]) -> None:
            exc = f.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, f.result())

        future.add_done_callback(done)

    def shutdown(self, wait: bool = True) -> None:
        self._closed = True
        self._pool.shutdown(wait)


def default_owner() -> str:
    """This replica's name in the runs table."""
    return f"{socket.gethostname()}:{os.getpid()}"


def build_scheduler(*, context: JobContext, engine: Engine | None = None,
                    owner: str | None = None) -> BackgroundScheduler:
    """A scheduler on the audit database (job store + claims); not started yet.

    The scheduler owns ``engine`` (it is disposed at shutdown)."""
    engine = engine or make_engine(context.settings.effective_database_url)
    claims = RunClaims(engine=engine)
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=scheduler_jobs.name)},
        executors={"default": ClaimingExecutor(claims=claims, context=context,
                                               owner=owner or default_owner())},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": MISFIRE_GRACE_TIME,
        },
        timezone=UTC,
    )
    scheduler.hotwash_claims = claims
    return scheduler


def sync_jobs(*, scheduler: BackgroundScheduler, context: JobContext) -> list[ScheduledJob]:
    """Make the job store hold exactly the table's rows, keeping unchanged ones as they are
    (so a missed run is still due after a restart). Returns the wanted rows."""
    wanted = expand(table=context.table, settings=context.settings)
    wanted_ids = {row.job_id for row in wanted}
    for job in scheduler.get_jobs():
        if job.id not in wanted_ids:
            scheduler.remove_job(job.id)
    for row in wanted:
        trigger = cron_trigger(row.cron)
        existing = scheduler.get_job(row.job_id)
        if (
            existing is not None
            and repr(existing.trigger) == repr(trigger)
            and tuple(existing.args) == (row.name,)
            and dict(existing.kwargs) == row.params
        ):
            continue
        scheduler.add_job(
            run_scheduled,
            trigger=trigger,
            args=(row.name,),
            kwargs=row.params,
            id=row.job_id,
            name=row.job_id,
            replace_existing=True,
        )
    return wanted


def start_scheduler(*, scheduler: BackgroundScheduler, context: JobContext) -> None:
    """Start paused, bring the job store in line with the table, then process jobs."""
    scheduler.start(paused=True)
    sync_jobs(scheduler=scheduler, context=context)
    scheduler.resume()


def run_jobs(*, services: Services, slack: SlackPoster | None,
             owner: str | None = None) -> BackgroundScheduler:
    """Build and start the scheduler for a bot process (call :func:`stop_scheduler` at
    exit). Every replica may call this: each slot still runs once."""
    context = JobContext(settings=services.settings, services=services, slack=slack)
    scheduler = build_scheduler(context=context, owner=owner)
    start_scheduler(scheduler=scheduler, context=context)
    return scheduler


def stop_scheduler(scheduler: BackgroundScheduler, *, wait: bool = True) -> None:
    """Shut down and close every database connection the scheduler opened.

    APScheduler 3 polls the job store once more after disposing its engine during
    shutdown, which checks out a fresh connection; dispose again so none is left open."""
    if scheduler.running:
        scheduler.shutdown(wait=wait)
    claims_of(scheduler).engine.dispose()


def claims_of(scheduler: BackgroundScheduler) -> RunClaims:
    """The claims table of a scheduler built by :func:`build_scheduler`."""
    claims = getattr(scheduler, "hotwash_claims", None)
    if not isinstance(claims, RunClaims):
        raise TypeError("not a scheduler from bot.jobs.build_scheduler")
    return claims
