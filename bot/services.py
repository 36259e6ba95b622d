"""build_services(settings): the one place where real adapters are wired to ports.

Each room exposes one builder taking Settings; this module calls them lazily so a CLI
command that needs only one room (e.g. `hotwash runbooks search`) builds only that one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.context import EvidenceCache
from bot.domain import Alert, RunbookMatch
from bot.ports import RunbookIndex
from bot.quota import DailyTokenQuota
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.audit.store import AuditStore
    from bot.ports import ChatModel, LogSource

log = logging.getLogger(__name__)


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
            ledger = getattr(self.store, "tokens_spent", None)
            self.quota = DailyTokenQuota(
                limit=self.settings.daily_token_quota,
                ledger=(lambda channel, since: ledger(channel=channel, since=since))
                if callable(ledger) else None)
        if self.evidence_cache is None:
            self.evidence_cache = EvidenceCache()

    def close(self) -> None:
        """Release what the process opened: log source and model clients, then the store.
        One failing close does not keep the others open."""
        closers = [self.logs.close, *(getattr(m, "close", None) for m in self.models),
                   self.store.close]
        for close in closers:
            if close is None:
                continue
            try:
                close()
            except Exception:  # shutting down: log it, close the rest
                log.warning("closing %s failed", getattr(close, "__qualname__", close),
                            exc_info=True)


class UnavailableRunbookIndex:
    """Stands in when the runbook index could not be built at start (missing model files,
    Chroma down): every match reports the start-up error, which the pipeline turns into an
    evidence gap, so drafts are still written and say what was missing."""

    def __init__(self, *, error: str) -> None:
        self.error = error

    def match(self, query: Alert | str, *, limit: int = 3) -> list[RunbookMatch]:
        raise RuntimeError(f"runbook index unavailable since start-up: {self.error}")


def build_services(settings: Settings) -> Services:
    """Wire the real adapters chosen by ``settings``.

    The audit store is required (drafts must be stored); the runbook index is not: if it
    cannot be built, triage carries on without runbooks and says so in every draft.
    """
    from bot.audit.store import build_store
    from bot.llm import build_chat_models
    from bot.logsource import build_log_source
    from bot.retrieval import build_runbook_index

    store = build_store(settings)
    runbooks: RunbookIndex
    try:
        runbooks = build_runbook_index(settings)
    except Exception as exc:  # a missing model or an unreachable Chroma must not stop the bot
        log.error("runbook index unavailable: %s", exc)
        runbooks = UnavailableRunbookIndex(error=f"{type(exc).__name__}: {exc}")
    return Services(
        settings=settings,
        store=store,
        runbooks=runbooks,
        logs=build_log_source(settings),
        models=build_chat_models(settings),
    )
