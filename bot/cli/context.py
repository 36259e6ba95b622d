"""What every command shares: the Settings of this invocation and the consoles."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from bot.domain import Alert
from bot.settings import Settings, SettingsError, load_settings

out = Console()
err = Console(stderr=True)


def settings_from(ctx: typer.Context) -> Settings:
    """Settings for this invocation, built once and cached on the root context.

    A bad value prints one line naming the variable and exits 2.
    """
    root = ctx.find_root()
    if isinstance(root.obj, Settings):
        return root.obj
    try:
        settings = load_settings()
    except SettingsError as exc:
        err.print(f"configuration error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    root.obj = settings
    return settings


def read_alerts(source: str) -> list[Alert]:
    """The alerts in a payload file (or stdin for ``-``) of any form `bot.alerts` parses.

    An unreadable file or an unrecognised payload prints one line and exits 2.
    """
    from bot.alerts import PayloadError, parse_payload

    try:
        body = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        err.print(f"cannot read alert: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    try:
        return parse_payload(body)
    except PayloadError as exc:
        err.print(f"not an alert payload: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
