"""Socket Mode offline: the fake apps.connections.open hands out a local ws:// URL and a
local websocket server plays Slack's side of the envelope protocol."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.audit.store import build_store
from bot.services import Services
from bot.settings import Settings
from bot.slack.app import build_app, build_room
from bot.slack.poster import ChannelPacer, SlackPoster, build_web_client
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, TEAM_ID, FakeSlackAPI
from tests.fakes.slack_socket import FakeSocketModeSlack
from tests.slack_harness import ALERT_CHANNEL, APPROVER, CheckoutLogs, DemoRunbooks, eventually


@pytest.fixture
def socket_slack() -> Iterator[FakeSocketModeSlack]:
    server = FakeSocketModeSlack()
    yield server
    server.close()


def test_slash_command_and_alert_over_socket_mode(tmp_path: Path,
                                                  socket_slack: FakeSocketModeSlack) -> None:
    command = {"token": "legacy", "team_id": TEAM_ID, "channel_id": ALERT_CHANNEL,
               "user_id": APPROVER, "command": "/hotwash", "text": "help",
               "api_app_id": "A0HOTWASH", "trigger_id": "1.2.3",
               "response_url": "http://127.0.0.1:9/unused"}
    alert_ts = f"{time.time():.6f}"
    event = {"type": "event_callback", "team_id": TEAM_ID, "api_app_id": "A0HOTWASH",
             "event_id": "EvSOCKET1", "event_time": int(time.time()),
             "event": {"type": "message", "channel": ALERT_CHANNEL, "user": "U0ONCALL",
                       "ts": alert_ts, "text": "[FIRING:1] CheckoutHighErrorRate\n"
                                               "service: checkout\nseverity: critical"}}
    socket_slack.outbox = [
        {"envelope_id": "env-cmd", "type": "slash_commands", "accepts_response_payload": True,
         "payload": command},
        {"envelope_id": "env-evt", "type": "events_api", "accepts_response_payload": False,
         "payload": event, "retry_attempt": 0, "retry_reason": ""},
    ]
    with FakeSlackAPI() as fake:
        fake.socket_mode_url = socket_slack.url
        settings = Settings(data_dir=tmp_path / "data", slack_api_url=fake.url,
                            slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN,  # type: ignore[arg-type]
                            alert_channels=[ALERT_CHANNEL], approvers=[APPROVER])
        store = build_store(settings)
        services = Services(settings=settings, store=store, runbooks=DemoRunbooks(),
                            logs=CheckoutLogs(), models=[])
        client = build_web_client(settings)
        executor = ThreadPoolExecutor(max_workers=1)
        room = build_room(services, client=client, executor=executor,
                          poster=SlackPoster(client=client, pacer=ChannelPacer(interval_s=0)))
        app = build_app(room, socket_mode=True)
        handler = SocketModeHandler(app, APP_TOKEN, web_client=client)
        try:
            handler.connect()  # type: ignore[no-untyped-call]
            acks = eventually(lambda: {a["envelope_id"]: a for a in socket_slack.acks}
                              if len(socket_slack.acks) >= 2 else None)
            assert "/hotwash triage <text>" in json.dumps(acks["env-cmd"]["payload"])
            assert fake.calls_to("apps.connections.open")[0].token == APP_TOKEN
            update = fake.wait_for("chat.update")[0]
            assert "pending approval" in json.dumps(update.args["blocks"])
            working = fake.calls_to("chat.postMessage")[0]
            assert working.args["thread_ts"] == alert_ts
            eventually(lambda: len(store.list_drafts()) == 1)
        finally:
            handler.close()  # type: ignore[no-untyped-call]
            app.listener_runner.listener_executor.shutdown(wait=True)
            executor.shutdown(wait=True)
            store.close()
