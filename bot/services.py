"""build_services(settings): the one place where real adapters are wired to ports.

Each room has its own builder so it can be swapped (or reused by one CLI command)
without constructing the rest.
"""

from __future__ import annotations

from bot.settings import Settings

__all__ = ["Settings"]
