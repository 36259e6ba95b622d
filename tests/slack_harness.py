"""A running Hotwash HTTP app on 127.0.0.1 talking to the fake Slack Web API.

Used by the Slack, web and intake tests and by the benchmarks: a real AuditStore (SQLite in
a temporary folder), the real Bolt app served by uvicorn through our FastAPI app, a real
WebClient pointed at :class:`tests.fakes.slack_api.FakeSlackAPI`, and requests signed with a
real signing secret and real timestamps. Logs and runbooks are small in-memory adapters of
the ports (the triage pipeline itself is the real one unless a test passes another).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn

from bot.audit.store import AuditStore, build_store
from bot.domain import (
    Alert,
    EvidenceItem,
    EvidenceKind,
    EvidencePart,
    RunbookMatch,
)
from bot.intake import Triage
from bot.services import Services
from bot.settings import Settings
from bot.slack.app import SlackRoom, build_app, build_room
from bot.slack.poster import ChannelPacer, SlackPoster, build_web_client
from bot.web import build_web_app
from tests.fakes.slack_api import BOT_TOKEN, TEAM_ID, FakeSlackAPI

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ALERT_CHANNEL = "C0ALERTS"
APPROVER = "U0APPROVER"
STRANGER = "U0STRANGER"
WEBHOOK_TOKEN = "webhook-secret-token"
APP_ID = "A0HOTWASH"


class CheckoutLogs:
    """In-memory LogSource: the demo incident's new error template."""

    name = "memory"

    def collect(self, alert: Alert) -> EvidencePart:
        return EvidencePart(items=(EvidenceItem(
            id="E2", kind=EvidenceKind.LOG_TEMPLATE,
            title="HikariPool-1 - Connection is not available, request timed out after <*>ms",
            text="HikariPool-1 - Connection is not available, request timed out after 30000ms",
            source="memory:checkout", count=412, level="ERROR", is_new=True),))

    def close(self) -> None:
        pass


class DemoRunbooks:
    """In-memory RunbookIndex with one runbook; abstains on unrelated queries."""

    def match(self, query: Alert | str, *, limit: int = 3) -> list[RunbookMatch]:
        text = query.query_text() if isinstance(query, Alert) else query
        if not any(w in text.lower() for w in ("pool", "checkout", "5xx", "500", "db")):
            return []
        return [RunbookMatch(id="db/connection-pool", title="Database connection pool exhausted",
                             score=0.82, section="Diagnosis > Pool saturation",
                             text="Check active vs max pool size; raise maximumPoolSize.")][:limit]


def sign(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
         ) -> dict[str, str]:
    """Slack's v0 signature headers for ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class Harness:
    """The app under test, served on 127.0.0.1, plus request builders."""

    def __init__(self, *, tmp_path: Path, triage: Triage | None = None,
                 pace_s: float = 0.0, approvers: list[str] | None = None,
                 extra_settings: dict[str, Any] | None = None) -> None:
        self.fake = FakeSlackAPI().start()
        self.settings = Settings(
            data_dir=tmp_path / "data", slack_api_url=self.fake.url,
            slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET,  # type: ignore[arg-type]
            webhook_token=WEBHOOK_TOKEN,  # type: ignore[arg-type]
            alert_channels=[ALERT_CHANNEL],
            approvers=[APPROVER] if approvers is None else approvers,
            runbook_url_base="https://git.example.com/runbooks",
            **(extra_settings or {}))
        self.store: AuditStore = build_store(self.settings)
        models = []
        if self.settings.llm_base_url:  # a test passes the fake model server's URL
            from bot.llm import build_chat_models

            models = build_chat_models(self.settings)
        self.services = Services(settings=self.settings, store=self.store,
                                 runbooks=DemoRunbooks(), logs=CheckoutLogs(), models=models)
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-triage")
        client = build_web_client(self.settings)
        poster = SlackPoster(client=client, pacer=ChannelPacer(interval_s=pace_s))
        self.room: SlackRoom = build_room(self.services, client=client, triage=triage,
                                          executor=self.executor, poster=poster)
        self.bolt = build_app(self.room)
        self.web = build_web_app(services=self.services, intake=self.room.intake,
                                 bolt_app=self.bolt)
        self._server = uvicorn.Server(uvicorn.Config(
            self.web, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, daemon=True,
                                        name="hotwash-test-http")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base_url, timeout=10)

    def close(self) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.executor.shutdown(wait=True)
        self.bolt.listener_runner.listener_executor.shutdown(wait=True)  # lazy listeners
        self.store.close()
        self.fake.stop()

    # --- Slack requests -------------------------------------------------------------------

    def post_signed(self, body: str, *, content_type: str, headers: dict[str, str] | None = None,
                    timestamp: int | None = None, secret: str = SIGNING_SECRET
                    ) -> httpx.Response:
        all_headers = {"Content-Type": content_type, **sign(body, secret=secret,
                                                           timestamp=timestamp)}
        all_headers.update(headers or {})
        return self.http.post("/slack/events", content=body.encode(), headers=all_headers)

    def event(self, event: dict[str, Any], *, event_id: str = "Ev0001",
              retry: int | None = None, **kwargs: Any) -> httpx.Response:
        body = json.dumps({"token": "legacy", "team_id": TEAM_ID, "api_app_id": APP_ID,
                           "type": "event_callback", "event_id": event_id,
                           "event_time": int(time.time()), "event": event,
                           "authorizations": [{"team_id": TEAM_ID, "user_id": "U0HOTWASHBOT",
                                               "is_bot": True}]})
        headers = {}
        if retry is not None:
            headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return self.post_signed(body, content_type="application/json", headers=headers,
                                **kwargs)

    def message(self, text: str, *, ts: str | None = None, channel: str = ALERT_CHANNEL,
                user: str = "U0ONCALL", **extra: Any) -> dict[str, Any]:
        """A message event as Slack sends it, also stored in the fake's history."""
        seeded = self.fake.add_message(channel, text=text, user=user, **extra)
        event = {"type": "message", "channel": channel, "user": user, "text": text,
                 "ts": ts or seeded["ts"], "event_ts": ts or seeded["ts"],
                 "channel_type": "channel", **extra}
        return event

    def command(self, text: str, *, user: str = APPROVER, channel: str = ALERT_CHANNEL,
                **kwargs: Any) -> httpx.Response:
        body = urlencode({"token": "legacy", "team_id": TEAM_ID, "team_domain": "hotwash",
                          "channel_id": channel, "channel_name": "alerts", "user_id": user,
                          "user_name": user.lower(), "command": "/hotwash", "text": text,
                          "api_app_id": APP_ID, "response_url": self.fake.response_url("cmd"),
                          "trigger_id": f"13345.{time.monotonic_ns()}.abc"})
        return self.post_signed(body, content_type="application/x-www-form-urlencoded",
                                **kwargs)

    def click(self, action_id: str, *, draft_id: int, user: str = APPROVER,
              channel: str = ALERT_CHANNEL, message_ts: str = "1.000001",
              ephemeral: bool = False, **kwargs: Any) -> httpx.Response:
        payload = {
            "type": "block_actions", "team": {"id": TEAM_ID, "domain": "hotwash"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": "legacy",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": ephemeral},
            "trigger_id": f"13345.{time.monotonic_ns()}.xyz",
            "channel": {"id": channel, "name": "alerts"},
            "message": {"type": "message", "ts": message_ts, "bot_id": "B0HOTWASH"},
            "response_url": self.fake.response_url("action"),
            "actions": [{"action_id": action_id, "block_id": f"draft_actions:{draft_id}",
                         "value": str(draft_id), "type": "button",
                         "action_ts": f"{time.time():.6f}"}],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return self.post_signed(body, content_type="application/x-www-form-urlencoded",
                                **kwargs)

    def submit_view(self, view: dict[str, Any], *, values: dict[str, dict[str, str]],
                    user: str = APPROVER) -> httpx.Response:
        """Submit a modal as opened via views.open, with ``{block_id: {action_id: value}}``."""
        state = {block: {action: {"type": "plain_text_input", "value": value}
                         for action, value in actions.items()}
                 for block, actions in values.items()}
        payload = {
            "type": "view_submission", "team": {"id": TEAM_ID, "domain": "hotwash"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": "legacy",
            "trigger_id": f"13345.{time.monotonic_ns()}.view",
            "view": {**view, "id": view.get("id", "V0001"), "team_id": TEAM_ID,
                     "state": {"values": state}, "hash": f"{time.monotonic_ns()}.hash"},
        }
        body = urlencode({"payload": json.dumps(payload)})
        return self.post_signed(body, content_type="application/x-www-form-urlencoded")

    # --- webhooks --------------------------------------------------------------------------

    def webhook(self, kind: str, body: bytes | str, *, token: str | None = WEBHOOK_TOKEN,
                content_type: str = "application/json") -> httpx.Response:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body.encode() if isinstance(body, str) else body
        return self.http.post(f"/webhooks/{kind}", content=data, headers=headers)

    # --- inspection -----------------------------------------------------------------------

    def received_count(self) -> int:
        from sqlalchemy import func, select

        from bot.audit.models import Received

        with self.store.read() as session:
            return int(session.scalar(select(func.count()).select_from(Received)) or 0)

    def event_types(self, subject: str) -> list[str]:
        return [e.type for e in self.store.events(subject=subject)]


@contextmanager
def running(tmp_path: Path, **kwargs: Any) -> Iterator[Harness]:
    harness = Harness(tmp_path=tmp_path, **kwargs)
    try:
        yield harness
    finally:
        harness.close()


def eventually(check: Any, *, timeout: float = 10.0) -> Any:
    """Poll ``check()`` until it returns a truthy value (lazy listeners run in threads)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        time.sleep(0.01)
