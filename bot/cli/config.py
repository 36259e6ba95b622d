"""`hotwash config check`: print the effective configuration, secrets masked."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from bot.cli.context import out, settings_from
from bot.settings import masked

config_app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)


@config_app.command("check")
def check(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Validate settings and print the effective config with secrets masked."""
    values = masked(settings_from(ctx))
    if as_json:
        out.print_json(json.dumps(values, default=str))
        return
    table = Table("setting", "value", title="Hotwash effective configuration")
    for key, value in values.items():
        table.add_row(key, str(value))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add `config` to the root app."""
    app.add_typer(config_app, name="config")
