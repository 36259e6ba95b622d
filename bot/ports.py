"""Interfaces between the rooms of the house. Adapters in ``bot/adapters`` implement them.

The pipeline only ever sees these Protocols; ``bot.services.build_services`` wires the
real adapters in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from bot.domain import Alert, Draft, EvidencePart, Incident, RunbookMatch


class LogSource(Protocol):
    """Logs and traces around an alert, condensed into citable evidence items."""

    name: str

    def collect(self, alert: Alert) -> EvidencePart:
        """Gather and condense logs/traces for ``alert``. Never raises for an outage:
        failures come back as ``EvidencePart.gaps`` with the exact query sent."""
        ...

    def close(self) -> None:
        """Release connections (the Elasticsearch client); nothing for files."""
        ...


class RunbookIndex(Protocol):
    """Runbooks ranked for an alert or free text; an empty list means "no runbook applies"."""

    def match(self, query: Alert | str, *, limit: int = 3) -> list[RunbookMatch]:
        """Ranked runbooks with calibrated scores; abstains (returns []) on weak evidence."""
        ...


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)
    role: str
    content: str


class ChatRequest(BaseModel):
    """One chat completion request, independent of the SDK."""

    model_config = ConfigDict(frozen=True)
    messages: tuple[ChatMessage, ...]
    json_schema: dict[str, Any] | None = None
    schema_name: str = "draft"
    max_tokens: int = 1200
    temperature: float = 0.1
    seed: int | None = None


class ChatResponse(BaseModel):
    """What the model said, with usage numbers from the server."""

    model_config = ConfigDict(frozen=True)
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    raw: dict[str, Any] = Field(default_factory=dict)


class ChatModel(Protocol):
    """An OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, hosted)."""

    name: str

    def complete(self, request: ChatRequest) -> ChatResponse:
        """One completion. Raises ``ModelError`` when the endpoint fails after retries."""
        ...


class ModelError(Exception):
    """The model endpoint failed (after retries); the pipeline falls back."""


class DraftStore(Protocol):
    """Where drafts live: the SQL audit store implements it."""

    def save_draft(self, *, draft: Draft) -> Draft:
        """Persist a pending draft (assigning its id); a newer draft of the same kind for
        the same incident supersedes older pending ones. Audited."""
        ...

    def get_draft(self, *, draft_id: int) -> Draft:
        """Raises ``KeyError`` for an unknown id."""
        ...

    def cached_draft(self, *, cache_key: str) -> Draft | None:
        """A stored draft with this cache key (fingerprint + evidence + prompt + model)."""
        ...


class IncidentStore(Protocol):
    """Received payloads and incidents (groups of alerts)."""

    def record_received(self, *, source: str, body: bytes, headers: dict[str, str],
                        idempotency_key: str | None = None) -> int:
        """Persist a raw payload verbatim before any parsing; returns its id.
        A repeated idempotency key returns the first row's id."""
        ...

    def open_incident(self, *, alert: Alert, window_s: int) -> tuple[Incident, bool]:
        """Attach ``alert`` to the open incident with its fingerprint within the window,
        or open a new one. Returns (incident, created)."""
        ...


class SlackPoster(Protocol):
    """Posting to Slack (a thin wrapper over ``slack_sdk.WebClient``)."""

    def post(self, *, channel: str, text: str, blocks: Sequence[dict[str, Any]] | None = None,
             thread_ts: str | None = None) -> str:
        """Post a message; returns its ts."""
        ...

    def update(self, *, channel: str, ts: str, text: str,
               blocks: Sequence[dict[str, Any]] | None = None) -> None:
        """Edit a posted message in place."""
        ...


class Clock(Protocol):
    """Time, injectable for tests."""

    def now(self) -> datetime: ...
