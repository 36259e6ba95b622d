"""A fake Slack Web API on 127.0.0.1 for tests and benchmarks.

In the spirit of bolt-python's ``tests/mock_web_api_server``: a real ``WebClient`` is pointed
at it with ``base_url``, every call is recorded with its arguments, responses look like
Slack's (``ok``, ``ts``, ``channel``), and faults (429 with Retry-After, Slack errors, HTTP
500) can be injected per method. Messages posted through ``chat.postMessage`` are kept per
channel so ``conversations.history`` / ``conversations.replies`` (with cursor pagination)
return them; tests can seed a channel with :meth:`FakeSlackAPI.add_message`.

Extend it by registering a handler: ``fake.handlers["pins.add"] = lambda call: {...}``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

BOT_TOKEN = "xoxb-hotwash-test"
APP_TOKEN = "xapp-1-hotwash-test"
TEAM_ID = "T0HOTWASH"
BOT_USER_ID = "U0HOTWASHBOT"
BOT_ID = "B0HOTWASH"


@dataclass
class Call:
    """One request the fake received."""

    method: str
    args: dict[str, Any]
    token: str | None
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    """A scripted failure for the next call(s) of one method."""

    status: int = 429
    error: str | None = None
    retry_after: int | None = 1


Handler = Callable[[Call], dict[str, Any]]


class FakeSlackAPI:
    """Threaded HTTP server answering Slack Web API methods under ``/api/``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.socket_mode_url: str | None = None
        self.post_interval_s: float | None = None
        """When set, chat.postMessage faster than this per channel gets 429 (Slack's
        "about one message per second per channel", without its short burst allowance)."""
        self.rate_limited: int = 0
        self._last_post: dict[str, float] = {}
        self.handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._permalink,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.info": self._conversation_info,
            "users.info": self._user_info,
            "usergroups.users.list": self._usergroup_users,
            "views.open": self._view,
            "views.update": self._view,
            "views.push": self._view,
            "reactions.add": lambda call: {"ok": True},
            "apps.connections.open": self._connections_open,
            "response_url": lambda call: {"ok": True},
        }
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._views = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeSlackAPI:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake._serve(self)

            def do_GET(self) -> None:  # noqa: N802
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-slack-api")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for ``WebClient(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str = "cmd") -> str:
        """A ``response_url`` for slash commands and actions that lands here."""
        return f"http://127.0.0.1:{self.port}/response/{name}"

    # --- scripting and inspection ---------------------------------------------------

    def inject(self, method: str, *, status: int = 429, error: str | None = None,
               retry_after: int | None = 1, times: int = 1) -> None:
        """Fail the next ``times`` calls of ``method`` (429 + Retry-After by default)."""
        with self._lock:
            for _ in range(times):
                self._faults[method].append(Fault(status, error, retry_after))

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, *, count: int = 1, timeout: float = 10.0,
                 where: Callable[[Call], bool] | None = None) -> list[Call]:
        """Block until ``count`` matching calls arrived; raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_to(method) if where is None or where(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} call(s) to {method}, got {len(found)}: "
                    f"{[c.method for c in self.calls]}")
            time.sleep(0.01)

    def add_user(self, user_id: str, *, name: str = "", is_bot: bool = False) -> None:
        self.users[user_id] = {"id": user_id, "name": name or user_id.lower(),
                               "real_name": name or user_id, "is_bot": is_bot,
                               "team_id": TEAM_ID}

    def add_usergroup(self, group_id: str, members: list[str]) -> None:
        self.usergroups[group_id] = list(members)

    def add_message(self, channel: str, *, text: str, user: str = "U0HUMAN",
                    thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
        """Seed a message (as if posted by someone else) and return it."""
        message = {"type": "message", "user": user, "text": text, "ts": self._next_ts(),
                   **extra}
        if thread_ts:
            message["thread_ts"] = thread_ts
        with self._lock:
            self.messages[channel].append(message)
        return message

    def next_ts(self) -> str:
        return self._next_ts()

    # --- HTTP plumbing ---------------------------------------------------------------

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        path = urlparse(request.path).path
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        content_type = request.headers.get("Content-Type", "")
        args: dict[str, Any] = {}
        if raw:
            if "json" in content_type:
                args = json.loads(raw)
            else:
                args = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        args.update(parse_qsl(urlparse(request.path).query))
        if path.startswith("/api/"):
            method = path[len("/api/"):]
        elif path.startswith("/response/"):
            method = "response_url"
            args["response_name"] = path[len("/response/"):]
        else:
            method = path.strip("/")
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else args.get("token")
        call = Call(method=method, args=args, token=token, headers=dict(request.headers))
        with self._lock:
            self.calls.append(call)
            fault = self._faults[method].popleft() if self._faults[method] else None
        if fault is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            body = {"ok": False, "error": fault.error or
                    ("ratelimited" if fault.status == 429 else "fatal_error")}
            self._write(request, fault.status, body, headers)
            return
        if method == "chat.postMessage" and self._too_fast(str(args.get("channel") or "")):
            self._write(request, 429, {"ok": False, "error": "ratelimited"},
                        {"Retry-After": "1"})
            return
        handler = self.handlers.get(method)
        if handler is None:
            self._write(request, 200, {"ok": False, "error": "unknown_method"})
            return
        if method not in ("response_url", "apps.connections.open") and not token:
            self._write(request, 200, {"ok": False, "error": "not_authed"})
            return
        self._write(request, 200, handler(call))

    def _too_fast(self, channel: str) -> bool:
        if self.post_interval_s is None:
            return False
        now = time.monotonic()
        with self._lock:
            last = self._last_post.get(channel)
            if last is not None and now - last < self.post_interval_s:
                self.rate_limited += 1
                return True
            self._last_post[channel] = now
            return False

    @staticmethod
    def _write(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(data)

    # --- method handlers -------------------------------------------------------------

    @staticmethod
    def _json_arg(value: Any) -> Any:
        """Form-encoded calls carry blocks/attachments as JSON strings."""
        if isinstance(value, str) and value[:1] in "[{":
            return json.loads(value)
        return value

    def _auth_test(self, call: Call) -> dict[str, Any]:
        if call.token and call.token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"ok": True, "url": "https://hotwash-test.slack.com/", "team": "Hotwash Test",
                "user": "hotwash", "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                "bot_id": BOT_ID, "is_enterprise_install": False}

    def _post_message(self, call: Call) -> dict[str, Any]:
        channel = str(call.args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        text = call.args.get("text") or ""
        blocks = self._json_arg(call.args.get("blocks"))
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        message: dict[str, Any] = {"type": "message", "subtype": "bot_message",
                                   "bot_id": BOT_ID, "user": BOT_USER_ID, "text": text,
                                   "ts": self._next_ts()}
        if blocks:
            message["blocks"] = blocks
        if call.args.get("thread_ts"):
            message["thread_ts"] = str(call.args["thread_ts"])
        with self._lock:
            self.messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _update(self, call: Call) -> dict[str, Any]:
        channel = str(call.args.get("channel") or "")
        ts = str(call.args.get("ts") or "")
        with self._lock:
            for message in self.messages.get(channel, []):
                if message["ts"] == ts:
                    message["text"] = call.args.get("text") or message.get("text", "")
                    blocks = self._json_arg(call.args.get("blocks"))
                    if blocks is not None:
                        message["blocks"] = blocks
                    return {"ok": True, "channel": channel, "ts": ts,
                            "text": message["text"], "message": dict(message)}
        return {"ok": False, "error": "message_not_found"}

    def _post_ephemeral(self, call: Call) -> dict[str, Any]:
        if not call.args.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _permalink(self, call: Call) -> dict[str, Any]:
        channel = call.args.get("channel")
        ts = str(call.args.get("message_ts") or "").replace(".", "")
        return {"ok": True, "channel": channel,
                "permalink": f"https://hotwash-test.slack.com/archives/{channel}/p{ts}"}

    @staticmethod
    def _page(items: list[dict[str, Any]], call: Call) -> tuple[list[dict[str, Any]], str]:
        limit = int(call.args.get("limit") or 100)
        start = int(call.args.get("cursor") or 0)
        page = items[start:start + limit]
        cursor = str(start + limit) if start + limit < len(items) else ""
        return page, cursor

    def _history(self, call: Call) -> dict[str, Any]:
        channel = str(call.args.get("channel") or "")
        with self._lock:
            top = [m for m in self.messages.get(channel, [])
                   if m.get("thread_ts") in (None, m["ts"])]
        newest_first = sorted(top, key=lambda m: float(m["ts"]), reverse=True)
        if call.args.get("oldest"):
            newest_first = [m for m in newest_first if float(m["ts"]) > float(call.args["oldest"])]
        if call.args.get("latest"):
            newest_first = [m for m in newest_first if float(m["ts"]) < float(call.args["latest"])]
        page, cursor = self._page(newest_first, call)
        return {"ok": True, "messages": page, "has_more": bool(cursor),
                "response_metadata": {"next_cursor": cursor}}

    def _replies(self, call: Call) -> dict[str, Any]:
        channel = str(call.args.get("channel") or "")
        ts = str(call.args.get("ts") or "")
        with self._lock:
            thread = [m for m in self.messages.get(channel, [])
                      if m["ts"] == ts or m.get("thread_ts") == ts]
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        ordered = sorted(thread, key=lambda m: float(m["ts"]))
        page, cursor = self._page(ordered, call)
        return {"ok": True, "messages": page, "has_more": bool(cursor),
                "response_metadata": {"next_cursor": cursor}}

    def _conversation_info(self, call: Call) -> dict[str, Any]:
        channel = str(call.args.get("channel") or "")
        return {"ok": True, "channel": {"id": channel, "name": channel.lower(),
                                        "is_channel": True, "is_member": True}}

    def _user_info(self, call: Call) -> dict[str, Any]:
        user = self.users.get(str(call.args.get("user") or ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _usergroup_users(self, call: Call) -> dict[str, Any]:
        group = self.usergroups.get(str(call.args.get("usergroup") or ""))
        if group is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(group)}

    def _view(self, call: Call) -> dict[str, Any]:
        view = self._json_arg(call.args.get("view")) or {}
        return {"ok": True, "view": {"id": f"V{next(self._views):08d}", "team_id": TEAM_ID,
                                     **view}}

    def _connections_open(self, call: Call) -> dict[str, Any]:
        if not (call.token or "").startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if self.socket_mode_url is None:
            return {"ok": False, "error": "socket_mode_not_configured_in_fake"}
        return {"ok": True, "url": self.socket_mode_url}
