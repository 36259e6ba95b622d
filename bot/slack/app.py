"""Build the Bolt app: one WebClient, one room of dependencies, listeners per feature.

Every listener acks first and does slow work in a lazy listener (``process_before_response``
on), so commands and clicks are answered well within Slack's 3 seconds whatever the model
does. The same app serves HTTP (``bot.web``) and Socket Mode (``bot.cli.serve``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.approval import Approvers
from bot.intake import Intake, Triage
from bot.slack import listeners, middleware
from bot.slack.poster import SlackPoster, build_web_client

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("hotwash.slack")


class GroupMembers:
    """``is_member(user, group)`` backed by ``usergroups.users.list``, cached briefly so a
    burst of clicks makes one call."""

    def __init__(self, *, client: WebClient, ttl_s: float = 60.0) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def __call__(self, user_id: str, group_id: str) -> bool:
        with self._lock:
            cached = self._cache.get(group_id)
        if cached is None or time.monotonic() - cached[0] > self.ttl_s:
            users = self.client.usergroups_users_list(usergroup=group_id)["users"]
            cached = (time.monotonic(), frozenset(str(u) for u in users))
            with self._lock:
                self._cache[group_id] = cached
        return user_id in cached[1]


@dataclass
class SlackRoom:
    """Everything the Slack listeners need, built once per process."""

    services: Services
    client: WebClient
    poster: SlackPoster
    intake: Intake
    approvers: Approvers
    url_base: str | None = None
    postmortem: Callable[..., Any] | None = None
    """`/hotwash postmortem` (bot.postmortem); None: the command answers "not available"."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> SlackRoom:
        # Bolt deep-copies the request context for lazy listeners; the room is shared
        # process-wide (clients, pools, executors), so the copy is the room itself.
        return self


def build_room(services: Services, *, client: WebClient | None = None,
               triage: Triage | None = None, executor: Executor | None = None,
               poster: SlackPoster | None = None) -> SlackRoom:
    """Wire the Slack room from services (a WebClient on ``settings.slack_api_url``)."""
    settings = services.settings
    client = client or build_web_client(settings)
    poster = poster or SlackPoster(client=client)
    # Without a bot token nothing can be posted: webhooks still store incidents and drafts.
    has_token = client.token is not None
    intake = Intake(services=services, poster=poster if has_token else None, triage=triage,
                    executor=executor)
    approvers = Approvers.from_settings(settings, is_member=GroupMembers(client=client))
    return SlackRoom(services=services, client=client, poster=poster, intake=intake,
                     approvers=approvers, url_base=settings.runbook_url_base,
                     postmortem=postmortem_drafter())


def postmortem_drafter() -> Callable[..., Any] | None:
    """The `/hotwash postmortem` handler: ``postmortem(*, room, command, respond)``."""
    from bot.postmortem import postmortem

    return postmortem


def build_app(room: SlackRoom, *, socket_mode: bool = False) -> App:
    """The Bolt app. HTTP mode verifies signatures with ``slack_signing_secret``; Socket
    Mode needs none (Slack authenticates the websocket with the app-level token)."""
    settings = room.services.settings
    secret = settings.slack_signing_secret.get_secret_value() \
        if settings.slack_signing_secret else None
    if not socket_mode and not secret:
        raise ValueError("HOTWASH_SLACK_SIGNING_SECRET is required for HTTP mode "
                         "(or set HOTWASH_SLACK_APP_TOKEN for Socket Mode)")
    app = App(
        client=room.client,
        signing_secret=secret or "",
        request_verification_enabled=not socket_mode,
        process_before_response=True,
        logger=logging.getLogger("hotwash.slack.bolt"),
    )
    app.use(middleware.persist(room))
    app.use(middleware.inject(room))
    listeners.register(app, room)
    return app
