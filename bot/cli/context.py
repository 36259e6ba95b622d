"""What every command shares: the Settings of this invocation and the consoles."""

from __future__ import annotations

import typer
from rich.console import Console

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
