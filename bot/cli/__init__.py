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
    app()
