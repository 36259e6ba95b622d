"""SlackPoster over ``slack_sdk.WebClient``: 429-aware and paced per channel.

Slack allows about one message per second per channel; in an alert storm we queue rather
than collect 429s. Retries on 429 honour ``Retry-After`` through slack_sdk's own
``RateLimitErrorRetryHandler`` (installed by :func:`build_web_client`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.settings import Settings
from bot.slack.call_metrics import observe


def build_web_client(settings: Settings, *, token: str | None = None,
                     rate_limit_retries: int = 3) -> WebClient:
    """The one WebClient of a process, pointed at ``settings.slack_api_url``."""
    if token is None and settings.slack_bot_token is not None:
        token = settings.slack_bot_token.get_secret_value()
    client = WebClient(base_url=settings.slack_api_url, token=token, timeout=10)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries))
    return observe(client)  # count Slack errors and 429s (bot.slack.call_metrics)


class ChannelPacer:
    """At most one message per ``interval_s`` per channel; callers wait their turn."""

    def __init__(self, *, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}

    def wait(self, channel: str) -> float:
        """Reserve the channel's next slot and sleep until it; returns seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot.get(channel, now))
            self._next_slot[channel] = slot + self.interval_s
            # Forget channels idle for a while so the map stays small in long runs.
            if len(self._next_slot) > 1024:
                self._next_slot = {c: t for c, t in self._next_slot.items() if t > now}
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay


class SlackPoster:
    """Implements ``bot.ports.SlackPoster`` (post/update) plus ephemeral messages."""

    def __init__(self, *, client: WebClient, pacer: ChannelPacer | None = None) -> None:
        self.client = client
        self.pacer = pacer or ChannelPacer()

    def post(self, *, channel: str, text: str, blocks: Sequence[dict[str, Any]] | None = None,
             thread_ts: str | None = None) -> str:
        """Post a message (waiting for the channel's slot); returns its ts."""
        self.pacer.wait(channel)
        response = self.client.chat_postMessage(channel=channel, text=text,
                                                blocks=list(blocks) if blocks else None,
                                                thread_ts=thread_ts, unfurl_links=False)
        return str(response["ts"])

    def update(self, *, channel: str, ts: str, text: str,
               blocks: Sequence[dict[str, Any]] | None = None) -> None:
        """Edit a posted message in place (not paced: it adds no message to the channel)."""
        self.client.chat_update(channel=channel, ts=ts, text=text,
                                blocks=list(blocks) if blocks is not None else None)

    def post_ephemeral(self, *, channel: str, user: str, text: str,
                       thread_ts: str | None = None) -> None:
        """A message only ``user`` sees (refusals, usage hints)."""
        self.client.chat_postEphemeral(channel=channel, user=user, text=text,
                                       thread_ts=thread_ts)
