"""`hotwash evidence --alert FILE|-`: the condensed, redacted log evidence for one alert."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from bot.cli.context import out, read_alerts, settings_from
from bot.domain import EvidencePart


def render_evidence(part: EvidencePart, *, source: str, console: Console = out) -> None:
    """Print condensed evidence as a table, then what was missing and the counts."""
    table = Table("id", "what", "evidence", title=f"Evidence from {source}", show_lines=True)
    for item in part.items:
        what = [item.kind.value, (item.level or "").upper(), "NEW" if item.is_new else "",
                f"x{item.count:,}"]
        if item.first_seen and item.last_seen:
            what.append(f"{item.first_seen:%H:%M:%S}-{item.last_seen:%H:%M:%S}")
        table.add_row(item.id, "\n".join(w for w in what if w), item.text)
    console.print(table)
    for gap in part.gaps:
        console.print(f"[red]missing[/red] {gap.source}: {gap.error}", highlight=False)
        if gap.query:
            console.print(gap.query, markup=False, highlight=False)
    stats = ", ".join(f"{k}={v}" for k, v in part.stats.items())
    console.print(f"redactions={part.redactions}  {stats}", markup=False, highlight=False)


def evidence(
    ctx: typer.Context,
    alert: str = typer.Option(
        ..., "--alert", help="Alert payload file (any form), or - for stdin."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Fetch and condense the logs and traces around an alert."""
    from bot.logsource import build_log_source

    settings = settings_from(ctx)
    alerts = read_alerts(alert)
    source = build_log_source(settings)
    try:
        part = source.collect(alerts[0])
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()
    if as_json:
        payload = {"alert": alerts[0].name, "source": source.name,
                   **part.model_dump(mode="json")}
        out.print_json(json.dumps(payload, default=str))
        return
    render_evidence(part, source=source.name)


def register(app: typer.Typer) -> None:
    """Add `evidence` to the root app."""
    app.command("evidence")(evidence)
