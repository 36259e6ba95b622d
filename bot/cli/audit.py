"""`hotwash audit verify | export`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.context import err, out
from bot.cli.db import store_from

audit_app = typer.Typer(help="Verify and export the hash-chained audit log.",
                        no_args_is_help=True)


class ExportFormat(StrEnum):
    JSONL = "jsonl"


@audit_app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Walk the hash chain and check the records it vouches for; exit 1 and name the first
    bad row on tampering (edited, deleted or reordered events; payloads, drafts or decisions
    edited behind the log)."""
    with store_from(ctx) as store:
        report = store.verify()
    if report.ok:
        out.print(f"audit chain OK: {report.events} events, head {report.head_hash}",
                  highlight=False)
        return
    where = f"event #{report.bad_seq}" if report.bad_seq is not None else "chain head"
    if report.problems:  # the chain itself is intact; records contradict it
        err.print(f"audit records BROKEN at {where}: {len(report.problems)} record(s) do not "
                  f"match the intact chain of {report.events} events:",
                  highlight=False, markup=False, soft_wrap=True)
        for problem in report.problems[:50]:
            err.print(f"  - {problem}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)
    err.print(f"audit chain BROKEN at {where}: {report.reason} "
              f"({report.events} events verified before it)",
              highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("export")
def export(
    ctx: typer.Context,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = (
        ExportFormat.JSONL),
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="File (default stdout).")] = None,
) -> None:
    """Export every event, in chain order, one JSON object per line (with its hashes, so the
    export can be verified independently)."""
    with store_from(ctx) as store:
        lines = (json.dumps(event.as_dict(), ensure_ascii=False, sort_keys=True) + "\n"
                 for event in store.events())
        if output is None:
            for line in lines:
                typer.echo(line, nl=False)
            return
        count = 0
        with output.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line)
                count += 1
    err.print(f"exported {count} events to {output} ({fmt.value})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `audit` to the root app."""
    app.add_typer(audit_app, name="audit")
