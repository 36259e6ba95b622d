"""A fake OpenAI-compatible server on 127.0.0.1 (port 0) for tests and benchmarks.

The real ``openai`` client talks HTTP to it. It serves ``GET /v1/models`` and
``POST /v1/chat/completions`` (plain and streaming, ``response_format`` json_schema /
json_object), returns ``usage`` numbers, records every request, and plays a script of
faults before falling back to its default answer:

* ``Status(500)`` / ``Status(429, headers={"Retry-After": "1"})``: an HTTP error;
* ``Delay(seconds)``: hold the answer longer than the client's timeout;
* ``Reply(content)``: answer exactly this content (a dict is sent as JSON text);
* ``INVALID_JSON``: answer prose that is not JSON;
* ``BAD_CITATIONS``: the default answer, but citing evidence that does not exist and
  quoting strings that appear nowhere.

The default answer is written *from the evidence the prompt carried* (it parses the
``<evidence id=...>`` blocks of the user message): it ranks new log templates as causes and
cites the runbooks it was given. It knows nothing about the incident beyond the prompt, so a
test that passes with it proves the plumbing (evidence in, citations out, grounding), not the
judgement of a model.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_BLOCK = re.compile(
    r'<evidence id="(?P<id>[^"]+)" kind="(?P<kind>[^"]+)"(?P<attrs>(?:\s+\w+="[^"]*")*)>\n'
    r"(?P<text>.*?)\n</evidence>",
    re.DOTALL,
)


@dataclass(frozen=True)
class Status:
    code: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted failure"


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class Reply:
    content: str | dict[str, Any]
    finish_reason: str = "stop"


INVALID_JSON = Reply("Sure! Here is my analysis: the database is slow {not json")
# What a small model looping inside a grammar looks like when max_tokens cuts it off.
TRUNCATED = Reply('{"summary": "Pool exhausted", "severity": "SEV2", "likely_causes": '
                  '[{"cause": "pool", "evidence_ids": ["R3", "R3", "R3", "R3", "R3"',
                  finish_reason="length")
BAD_CITATIONS = object()

Action = Status | Delay | Reply | object


def parse_evidence(prompt: str) -> list[dict[str, str]]:
    """The evidence blocks of a rendered user prompt, in order."""
    out = []
    for m in _BLOCK.finditer(prompt):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', m.group("attrs")))
        out.append({"id": m.group("id"), "kind": m.group("kind"), "text": m.group("text"), **attrs})
    return out


def answer_from_evidence(prompt: str) -> dict[str, Any]:
    """A well-formed triage answer citing only evidence present in ``prompt``."""
    blocks = parse_evidence(prompt)
    alert = next((b for b in blocks if b["kind"] == "alert"), None)
    logs = [b for b in blocks if b["kind"] in ("log_template", "trace")]
    new = [b for b in logs if b.get("new") == "true"] or logs
    runbooks = [b for b in blocks if b["kind"] == "runbook"]
    causes = []
    for rank, block in enumerate(new[:2]):
        # Log sources put the template in the title and counts/examples in the text.
        text_line = block["text"].strip().splitlines()[0] if block["text"].strip() else ""
        first_line = block.get("title") or text_line or block["id"]
        quote = first_line[:60].strip()
        causes.append({
            "cause": f"New error pattern since the baseline: {first_line[:160]}",
            "confidence": "medium" if rank == 0 else "low",
            "evidence_ids": [block["id"]] + ([alert["id"]] if alert else []),
            "quotes": [quote] if quote else [],
        })
    steps = [
        {"step": f"Follow the runbook section {rb.get('title', rb['id'])}",
         "command": None, "cites": [rb["id"]]}
        for rb in runbooks[:2]
    ]
    if new:
        steps.append({"step": "Check when the new error pattern first appeared",
                      "command": None, "cites": [new[0]["id"]]})
    title = alert["text"].splitlines()[0] if alert else "the alert"
    return {
        "summary": f"{title}. The evidence shows {len(new)} new log pattern(s) and "
                   f"{len(runbooks)} matching runbook(s).",
        "severity": "SEV2",
        "severity_rationale": "User-facing errors reported by a critical alert.",
        "likely_causes": causes,
        "next_steps": steps,
        "open_questions": ["Did a deploy happen just before the alert started?"],
        "related_runbooks": [rb["id"] for rb in runbooks[:3]],
    }


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as fake:``; ``fake.base_url`` ends in ``/v1``."""

    def __init__(self, *, model: str = "fake-model", reject_json_schema: bool = False) -> None:
        self.model = model
        self.reject_json_schema = reject_json_schema
        self.requests: list[dict[str, Any]] = []
        self._script: deque[Action] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, *actions: Action) -> None:
        """Queue actions; each chat request consumes one, then the default answer resumes."""
        with self._lock:
            self._script.extend(actions)

    def next_action(self) -> Action | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()  # wakes handlers sleeping in a Delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet tests
            return

        def do_GET(self) -> None:  # noqa: N802
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [
                    {"id": fake.model, "object": "model", "created": 0, "owned_by": "fake"}]})
            else:
                self._json(404, {"error": {"message": "not found", "type": "not_found"}})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": "not found", "type": "not_found"}})
                return
            fmt = (body.get("response_format") or {}).get("type")
            if fake.reject_json_schema and fmt == "json_schema":
                self._json(400, {"error": {"message": "response_format json_schema not supported",
                                           "type": "invalid_request_error"}})
                return
            action = fake.next_action()
            if isinstance(action, Status):
                self._json(action.code, {"error": {"message": action.message, "type": "fake"}},
                           headers=action.headers)
                return
            if isinstance(action, Delay):
                fake._stop.wait(action.seconds)
                action = None
            prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
            user = next((str(m.get("content", "")) for m in reversed(body.get("messages", []))
                         if m.get("role") == "user"), "")
            finish_reason = "stop"
            if isinstance(action, Reply):
                content = action.content
                finish_reason = action.finish_reason
            else:
                content = answer_from_evidence(user)
                if action is BAD_CITATIONS:
                    for cause in content["likely_causes"]:
                        cause["evidence_ids"] = ["E99"]
                        cause["quotes"] = ["a string that appears in no evidence at all"]
                    content["next_steps"] = [{"step": "Restart everything", "command": None,
                                              "cites": ["R9"]}]
                    content["related_runbooks"] = ["R9"]
            text = content if isinstance(content, str) else json.dumps(content)
            usage = {"prompt_tokens": max(1, len(prompt) // 4),
                     "completion_tokens": max(1, len(text) // 4)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if body.get("stream"):
                self._stream(text, usage, body)
                return
            self._json(200, {
                "id": f"chatcmpl-fake-{len(fake.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", fake.model),
                "choices": [{"index": 0, "finish_reason": finish_reason,
                             "message": {"role": "assistant", "content": text}}],
                "usage": usage,
            })

        def _stream(self, text: str, usage: dict[str, int], body: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            model = body.get("model", fake.model)
            pieces = [text[i:i + 16] for i in range(0, len(text), 16)] or [""]
            for i, piece in enumerate(pieces):
                delta = {"content": piece} if i else {"role": "assistant", "content": piece}
                chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                         "model": model, "choices": [{"index": 0, "delta": delta,
                                                      "finish_reason": None}]}
                self._event(chunk)
            self._event({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                         "model": model,
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                self._event({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                             "created": 0, "model": model, "choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, payload: dict[str, Any]) -> None:
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())

        def _json(self, code: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (timeout test): nothing to answer to.
                self.close_connection = True

    return Handler
