"""build_services(settings): the one place where real adapters are wired to ports.

Each room exposes one builder taking Settings; this module calls them lazily so a CLI
command that needs only one room (e.g. `hotwash runbooks search`) builds only that one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.context import EvidenceCache
from bot.quota import DailyTokenQuota
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.audit.store import AuditStore
    from bot.ports import ChatModel, LogSource, RunbookIndex


@dataclass
class Services:
    """Every adapter one Hotwash process uses, wired once."""

    settings: Settings
    store: AuditStore
    runbooks: RunbookIndex
    logs: LogSource
    models: list[ChatModel]
    # Per-channel daily token ledger for triage; built from settings when not given.
    quota: DailyTokenQuota | None = None
    # Evidence of alerts seen in the last minute, so a re-delivered alert skips the log read.
    evidence_cache: EvidenceCache | None = None

    def __post_init__(self) -> None:
        if self.quota is None:
            self.quota = DailyTokenQuota(limit=self.settings.daily_token_quota)
        if self.evidence_cache is None:
            self.evidence_cache = EvidenceCache()


def build_services(settings: Settings) -> Services:
    """Wire the real adapters chosen by ``settings``."""
    from bot.audit.store import build_store
    from bot.llm import build_chat_models
    from bot.logsource import build_log_source
    from bot.retrieval import build_runbook_index

    return Services(
        settings=settings,
        store=build_store(settings),
        runbooks=build_runbook_index(settings),
        logs=build_log_source(settings),
        models=build_chat_models(settings),
    )
