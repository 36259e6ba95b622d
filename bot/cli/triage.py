"""`hotwash triage --alert FILE|-`: gather evidence, draft, store pending, print the draft."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel

from bot.cli.context import err, out, read_alerts, settings_from
from bot.domain import Alert, Draft

if TYPE_CHECKING:
    from bot.services import Services


def draft_header(draft: Draft) -> str:
    """One line an approver reads first: id, status, drafter, grounding, tokens, latency."""
    score = "n/a" if draft.grounding_score is None else f"{draft.grounding_score:.2f}"
    ident = f"#{draft.id}" if draft.id is not None else "(not stored)"
    cost = f" · ${draft.cost_usd:.4f}" if draft.cost_usd else ""
    return (f"draft {ident} · {draft.status} · {draft.model} · grounding {score} · "
            f"tokens {draft.prompt_tokens}+{draft.completion_tokens}{cost} · "
            f"{draft.latency_ms:.0f} ms")


def show_draft(draft: Draft, *, title: str, console: Console = out) -> None:
    """Print a draft as rich Markdown under a header line."""
    console.print(Panel(Markdown(draft.markdown), title=title, subtitle=draft_header(draft),
                        subtitle_align="left"))


def triage_alert(*, alert: Alert, services: Services, console: Console | None = out) -> Draft:
    """The demo's triage step: attach the alert to its incident, draft, store, print.

    Never raises for a failing dependency (see :func:`bot.pipeline.triage`).
    """
    from bot.pipeline import triage

    incident = None
    try:
        incident, _ = services.store.open_incident(
            alert=alert, window_s=services.settings.incident_window_s)
    except Exception as exc:  # the draft is still worth writing without an incident row
        err.print(f"could not record the incident: {exc}", markup=False, highlight=False)
    draft = triage(alert=alert, services=services, incident=incident)
    if console is not None:
        show_draft(draft, title=f"Triage: {alert.name}", console=console)
    return draft


def triage_command(
    ctx: typer.Context,
    alert: str = typer.Option(
        ..., "--alert",
        help="Alert payload file (Alertmanager, Grafana, Slack, text) or - for stdin.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the stored drafts as JSON."),
) -> None:
    """Draft a grounded, cited triage for an alert and store it pending approval."""
    from bot.services import build_services

    settings = settings_from(ctx)
    alerts = [a for a in read_alerts(alert) if a.status == "firing"]
    if not alerts:
        err.print("no firing alert in the payload; nothing to triage")
        raise typer.Exit(0)
    services = build_services(settings)
    try:
        drafts = [triage_alert(alert=a, services=services, console=None if as_json else out)
                  for a in alerts]
    finally:
        services.close()
    if as_json:
        out.print_json(json.dumps([d.model_dump(mode="json") for d in drafts]))


def register(app: typer.Typer) -> None:
    """Add `triage` to the root app."""
    app.command("triage")(triage_command)
