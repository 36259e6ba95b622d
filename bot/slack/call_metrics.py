"""Slack Web API errors and 429s, counted for every call the process makes.

slack_sdk asks each retry handler about every response (``ok: false`` bodies included)
and every connection error. :class:`SlackCallMetrics` sits first in the client's list,
records what it sees and never asks for a retry itself, so the real retry handlers behind
it (rate-limit, connection) still decide. Bolt's listeners and our poster share the one
WebClient, so every call is counted once per attempt.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from slack_sdk.http_retry.handler import RetryHandler

from bot import metrics


def api_method(url: str) -> str:
    """``chat.postMessage`` from ``https://slack.com/api/chat.postMessage?x=y``."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "unknown"


class SlackCallMetrics(RetryHandler):
    """Counts failed Slack calls into ``hotwash_slack_api_errors_total`` and 429s into
    ``hotwash_slack_rate_limited_total``; never retries."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=0)

    def can_retry(self, *, state: Any, request: Any, response: Any = None,
                  error: Exception | None = None) -> bool:
        method = api_method(getattr(request, "url", "") or "")
        if response is not None:
            status = int(getattr(response, "status_code", 0) or 0)
            body = getattr(response, "body", None)
            if status == 429:
                metrics.record_slack_error(method=method, error="ratelimited", status=429)
            elif status >= 400:
                metrics.record_slack_error(method=method, error=f"http_{status // 100}xx",
                                           status=status)
            elif isinstance(body, dict) and body.get("ok") is False:
                metrics.record_slack_error(method=method, error=str(body.get("error", "")))
        elif error is not None:
            metrics.record_slack_error(method=method, error="connection")
        return False

    def _can_retry(self, *, state: Any, request: Any, response: Any = None,
                   error: Exception | None = None) -> bool:
        return False


class _Retrying(Protocol):
    retry_handlers: list[Any]


Client = TypeVar("Client", bound=_Retrying)


def observe(client: Client) -> Client:
    """Put :class:`SlackCallMetrics` first on ``client`` (a ``slack_sdk.WebClient``)."""
    if not any(isinstance(h, SlackCallMetrics) for h in client.retry_handlers):
        client.retry_handlers.insert(0, SlackCallMetrics())
    return client
