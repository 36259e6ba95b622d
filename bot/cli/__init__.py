"""The `hotwash` command: the composition root. Settings are built here, not at import."""

from __future__ import annotations

import typer

from bot.cli import (
    audit,
    config,
    db,
    demo,
    drafts,
    evidence,
    jobs,
    postmortem,
    runbooks,
    serve,
    triage,
)

app = typer.Typer(
    name="hotwash",
    help="Hotwash: grounded, cited incident triage drafts, approved by humans.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for module in (config, db, drafts, audit, runbooks, evidence, triage, serve, postmortem, jobs,
               demo):
    module.register(app)


def main() -> None:
    from bot.audit.schema import SchemaOutOfDate
    from bot.cli.context import err

    try:
        app()
    except SchemaOutOfDate as exc:  # any command that opens the store: one line, no trace
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise SystemExit(1) from None
