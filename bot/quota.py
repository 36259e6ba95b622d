"""Daily token quota per channel: when a channel has spent its tokens for the UTC day,
triage drafts are written without a model (with a visible note) until midnight UTC.

With a ``ledger`` (the audit store's ``tokens_spent``) the count is read from the stored
drafts, so it survives restarts and every replica sees the same spend. Without one (tests,
a store that cannot answer) it is kept in process memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime

DEFAULT_CHANNEL = "(no channel)"


class DailyTokenQuota:
    """Tokens spent per (channel, UTC day) against a limit; ``limit=0`` means unlimited."""

    def __init__(self, *, limit: int, now: Callable[[], datetime] | None = None,
                 ledger: Callable[[str | None, datetime], int] | None = None) -> None:
        self.limit = limit
        self._now = now or (lambda: datetime.now(UTC))
        self._ledger = ledger
        self._spent: dict[tuple[str, date], int] = {}
        self._lock = threading.Lock()

    def _key(self, channel: str | None) -> tuple[str, date]:
        return (channel or DEFAULT_CHANNEL, self._now().astimezone(UTC).date())

    def _midnight(self) -> datetime:
        today = self._now().astimezone(UTC).date()
        return datetime(today.year, today.month, today.day, tzinfo=UTC)

    def spent(self, *, channel: str | None) -> int:
        """Tokens spent today in ``channel``."""
        if self._ledger is not None:
            return self._ledger(channel, self._midnight())
        with self._lock:
            return self._spent.get(self._key(channel), 0)

    def exhausted(self, *, channel: str | None) -> bool:
        """True when the channel may not call a model again today."""
        return self.limit > 0 and self.spent(channel=channel) >= self.limit

    def spend(self, *, channel: str | None, tokens: int) -> float:
        """Add ``tokens`` (of a draft about to be stored); returns the share of the quota now
        used (0 when unlimited)."""
        if self._ledger is not None:
            used = self._ledger(channel, self._midnight()) + max(tokens, 0)
            return used / self.limit if self.limit else 0.0
        with self._lock:
            key = self._key(channel)
            today = key[1]
            # Forget earlier days so the ledger does not grow forever.
            for old in [k for k in self._spent if k[1] != today]:
                del self._spent[old]
            self._spent[key] = self._spent.get(key, 0) + max(tokens, 0)
            return self._spent[key] / self.limit if self.limit else 0.0
