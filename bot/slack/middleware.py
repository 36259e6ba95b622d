"""Bolt middleware: persist every request verbatim, drop duplicates, inject services.

Bolt runs its own middleware first (signature check, authorization, ignoring our own
events), so a request with a bad signature or a stale timestamp is answered 401 before
anything here runs, and nothing of it is stored.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import BoltContext, BoltRequest, BoltResponse

if TYPE_CHECKING:
    from bot.slack.app import SlackRoom

log = logging.getLogger("hotwash.slack")

ROOM = "hotwash"
"""Context key under which listeners find the :class:`SlackRoom` (services, intake...)."""
RECEIVED_ID = "received_id"


class SeenKeys:
    """Idempotency keys seen by this process (bounded), to answer quick retries at once."""

    def __init__(self, *, size: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is offered."""
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return False
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
            return True


def request_kind(body: dict[str, Any]) -> str:
    """events / command / action / view, for the ``source`` column of received payloads."""
    if body.get("type") == "event_callback":
        return "event"
    if "command" in body:
        return "command"
    if body.get("type") in ("view_submission", "view_closed"):
        return "view"
    if body.get("type") in ("block_actions", "interactive_message", "shortcut",
                            "message_action"):
        return "action"
    return str(body.get("type") or "unknown")


def idempotency_key(body: dict[str, Any]) -> str | None:
    """Slack's own id for a delivery. Retries (``X-Slack-Retry-Num``) carry the same
    ``event_id``, so the key stays the same across them; interactions carry a unique
    ``trigger_id`` per click; commands a unique ``trigger_id`` per invocation."""
    if body.get("event_id"):
        return f"slack:event:{body['event_id']}"
    if body.get("type") == "view_submission" and isinstance(body.get("view"), dict):
        view = body["view"]
        return f"slack:view:{view.get('id')}:{view.get('hash')}"
    if body.get("trigger_id"):
        return f"slack:trigger:{body['trigger_id']}"
    return None


def _headers(request: BoltRequest) -> dict[str, str]:
    return {name: values[0] for name, values in request.headers.items() if values}


def inject(room: SlackRoom) -> Callable[..., BoltResponse | None]:
    """Put the room (services, intake, poster, approvers) into every request's context."""

    def inject_room(context: BoltContext, next_: Callable[[], BoltResponse]) -> BoltResponse:
        context[ROOM] = room
        return next_()

    return inject_room


def persist(room: SlackRoom) -> Callable[..., BoltResponse | None]:
    """Store the raw request before any listener reads it; answer duplicates with a bare
    200 so Slack stops retrying and nothing runs twice."""
    seen = SeenKeys()

    def persist_request(request: BoltRequest, context: BoltContext,
                        next_: Callable[[], BoltResponse]) -> BoltResponse:
        body = request.body if isinstance(request.body, dict) else {}
        key = idempotency_key(body)
        received_id = room.intake.persist(
            source=f"slack:{request_kind(body)}", body=request.raw_body.encode("utf-8"),
            headers=_headers(request), idempotency_key=key)
        context[RECEIVED_ID] = received_id
        if key is not None and _is_repeat(room, seen, key, received_id):
            log.info("duplicate Slack delivery %s (received %s) ignored", key, received_id)
            return BoltResponse(status=200, body="")
        return next_()

    return persist_request


def _is_repeat(room: SlackRoom, seen: SeenKeys, key: str, received_id: int) -> bool:
    if not seen.first_time(key):
        return True
    if not key.startswith("slack:event:"):
        return False  # commands and clicks carry a fresh trigger_id; Slack never retries them
    # Another process (or this one before a restart) already finished with this delivery.
    row = room.services.store.get_received(received_id=received_id)
    return row.status != "received"
