"""`hotwash jobs list | run NAME` and `hotwash digest --channel C [--window 1h]`.

`jobs list` shows the one job table as the settings expand it (per channel, per cron), the
next fire time and the last recorded run. `jobs run` runs a job now, outside the schedule
(the run is recorded like a scheduled one, owner ``cli``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bot.cli.context import err, out, settings_from
from bot.cli.db import store_from

if TYPE_CHECKING:
    from bot.audit.store import AuditStore
    from bot.services import Services
    from bot.settings import Settings
    from bot.slack.poster import SlackPoster

jobs_app = typer.Typer(help="The scheduled jobs (digests, runbook re-index, retention).",
                       no_args_is_help=True)

_WINDOW = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_window(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``7d`` -> timedelta; raises typer.BadParameter."""
    match = _WINDOW.match(text)
    if not match or int(match.group(1)) == 0:
        raise typer.BadParameter(f"{text!r}: expected a duration like 30m, 1h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@jobs_app.command("list")
def list_jobs(ctx: typer.Context) -> None:
    """The job table: id, cron, next run (UTC), last run and its outcome."""
    from bot.jobs import JOBS, RunClaims, cron_trigger, expand

    settings = settings_from(ctx)
    now = datetime.now(UTC)
    table = Table(title="Scheduled jobs (UTC)")
    for name in ("job", "cron", "next run", "last run", "status", "outcome"):
        table.add_column(name, overflow="fold")
    # The store's schema guard first: the runs table is one of the migrated tables.
    with store_from(ctx) as store:
        claims = RunClaims(engine=store.engine)
        for row in expand(table=JOBS, settings=settings):
            nxt = cron_trigger(row.cron).get_next_fire_time(None, now)
            last = claims.recent(job_id=row.job_id, limit=1)
            table.add_row(row.job_id, row.cron, f"{nxt:%Y-%m-%d %H:%M}" if nxt else "-",
                          f"{last[0].slot:%Y-%m-%d %H:%M}" if last else "never",
                          last[0].status if last else "", (last[0].outcome or "") if last
                          else "")
    out.print(table)
    if not settings.alert_channels:
        err.print("note: HOTWASH_ALERT_CHANNELS is empty, so no digest jobs are scheduled.")


@jobs_app.command("run")
def run_job(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="digest | reindex | retention")],
    channel: Annotated[str | None, typer.Option(help="Alert channel (digest).")] = None,
    window: Annotated[str, typer.Option(help="Digest window, e.g. 1h.")] = "1h",
) -> None:
    """Run one job from the table now."""
    from bot.jobs import JOBS, JobContext, RunClaims, execute

    settings = settings_from(ctx)
    if name not in JOBS:
        err.print(f"error: no job {name!r}; known: {', '.join(sorted(JOBS))}")
        raise typer.Exit(2)
    if JOBS[name].per_channel and not channel:
        err.print(f"error: job {name!r} needs --channel")
        raise typer.Exit(2)
    params = {"channel": channel} if channel else {}
    job_id = ":".join([name, *params.values()])
    slot = datetime.now(UTC)
    with store_from(ctx) as store:
        context = JobContext(settings=settings, services=_services(settings, store),
                             slack=_poster(settings))
        claims = RunClaims(engine=store.engine)
        claims.claim(job_id=job_id, slot=slot, owner="cli")
        try:
            outcome = execute(name=name, job_id=job_id, slot=slot, params=params,
                              context=context, window=parse_window(window))
        except Exception as exc:
            claims.finish(job_id=job_id, slot=slot, status="error", outcome=repr(exc))
            err.print(f"error: {name} failed: {exc}", markup=False)
            raise typer.Exit(1) from None
        claims.finish(job_id=job_id, slot=slot, status="ok", outcome=outcome)
    out.print(outcome, markup=False, highlight=False)


def _services(settings: Settings, store: AuditStore) -> Services:
    from bot.llm import build_chat_models
    from bot.services import Services

    # Jobs use the store and, for digest narratives, the models; the other rooms are built
    # by their own jobs (reindex builds its index itself).
    return Services(settings=settings, store=store, runbooks=None,  # type: ignore[arg-type]
                    logs=None, models=build_chat_models(settings))  # type: ignore[arg-type]


def _poster(settings: Settings) -> SlackPoster | None:
    if settings.slack_bot_token is None:
        return None
    from bot.slack.poster import SlackPoster, build_web_client

    return SlackPoster(client=build_web_client(settings))


def digest(
    ctx: typer.Context,
    channel: Annotated[str | None, typer.Option(help="Alert channel id (default: all).")] = None,
    window: Annotated[str, typer.Option(help="Window ending now, e.g. 1h or 1d.")] = "1h",
    post: Annotated[bool, typer.Option("--post", help="Also post it to the channel.")] = False,
) -> None:
    """Print the digest of a channel for the window ending now (numbers from SQL)."""
    from bot.digest import compute_digest, digest_blocks, digest_markdown, digest_text

    settings = settings_from(ctx)
    span = parse_window(window)
    end = datetime.now(UTC)
    with store_from(ctx) as store:
        stats = compute_digest(store=store, channel=channel, start=end - span, end=end)
        out.print(digest_markdown(stats), markup=False, highlight=False, soft_wrap=True)
        if post:
            poster = _poster(settings)
            if poster is None or channel is None:
                err.print("error: --post needs --channel and HOTWASH_SLACK_BOT_TOKEN")
                raise typer.Exit(2)
            ts = poster.post(channel=channel, text=digest_text(stats),
                             blocks=digest_blocks(stats))
            store.record_event(type="digest.posted", subject=f"channel:{channel}",
                               payload={"channel": channel, "ts": ts, "via": "cli",
                                        "stats": stats.as_dict(), "narrative": False})
            err.print(f"posted to {channel} (ts {ts})", markup=False)


def register(app: typer.Typer) -> None:
    """Add `jobs` and `digest` to the root app."""
    app.add_typer(jobs_app, name="jobs")
    app.command("digest")(digest)
