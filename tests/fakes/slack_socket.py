"""Slack's side of Socket Mode on 127.0.0.1, for offline tests.

Point ``FakeSlackAPI.socket_mode_url`` at :attr:`FakeSocketModeSlack.url`: the client's
``apps.connections.open`` then returns this ws:// URL. On connect the server says hello,
sends the queued envelopes (``outbox``) and records every ack the client sends back.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from websockets.sync.server import Server, ServerConnection, serve


class FakeSocketModeSlack:
    """Sends queued envelopes to the connected client and collects its acks."""

    def __init__(self) -> None:
        self.acks: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self._server: Server = serve(self._handle, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link"

    def _handle(self, ws: ServerConnection) -> None:
        ws.send(json.dumps({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A0HOTWASH"},
                            "debug_info": {"host": "fake", "approximate_connection_time": 3600}}))
        for envelope in self.outbox:
            ws.send(json.dumps(envelope))
        try:
            for message in ws:
                self.acks.append(json.loads(message))
        except Exception:  # the client went away
            return

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
