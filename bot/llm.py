"""ChatModel adapter for any OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama, hosted).

One class, :class:`OpenAIChatModel`, talks to ``/v1/chat/completions`` through the
``openai`` SDK. It owns the retry policy (the SDK's own retries are switched off so the
policy is one readable loop): exponential backoff with full jitter, ``Retry-After``
respected when the server sends it, and a give-up that raises :class:`ModelError` so the
pipeline can fall back down the chain.

Structured output: a request carrying a JSON schema is sent as
``response_format={"type": "json_schema", ...}`` (OpenAI structured outputs, vLLM guided
decoding, llama.cpp ``json_schema``, Ollama ``format``). A server that rejects that with a
400 is asked again with ``{"type": "json_object"}``, then with no ``response_format`` at all;
the adapter remembers what the endpoint accepted. Parsing and the one repair attempt live
in :mod:`bot.drafting`, because they depend on the output model, not on the transport.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import openai

from bot.ports import ChatModel, ChatRequest, ChatResponse, ModelError
from bot.settings import Settings

log = logging.getLogger(__name__)

SchemaMode = Literal["json_schema", "json_object", "none"]
_DOWNGRADE: dict[SchemaMode, SchemaMode] = {"json_schema": "json_object", "json_object": "none"}

# Statuses worth another try: throttling, timeouts, server-side failures.
_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIChatModel:
    """A chat model behind an OpenAI-compatible HTTP endpoint.

    ``name`` is the model name sent to the server and recorded on every draft.
    ``sleep`` and ``jitter`` are injectable so tests can observe the backoff without waiting.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 8.0,
        max_retry_after_s: float = 30.0,
        schema_mode: SchemaMode = "json_schema",
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.name = model
        self.base_url = base_url
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_retry_after_s = max_retry_after_s
        self.schema_mode: SchemaMode = schema_mode
        self._sleep = sleep
        self._jitter = jitter
        # Local servers ignore the key but the SDK insists on one; never read OPENAI_API_KEY
        # from the environment implicitly (settings are the only reader of the environment).
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=0,
        )

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()

    def complete(self, request: ChatRequest) -> ChatResponse:
        """One completion with retries; raises :class:`ModelError` when the endpoint fails."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                completion = self._client.chat.completions.create(**self._payload(request))
            except openai.BadRequestError as exc:
                if request.json_schema is not None and self.schema_mode in _DOWNGRADE:
                    # The server does not understand this response_format: ask in a plainer
                    # way and remember it; parsing + repair covers the weaker guarantee.
                    downgraded = _DOWNGRADE[self.schema_mode]
                    log.warning("model %s rejected response_format=%s (%s); using %s",
                                self.name, self.schema_mode, _short(exc), downgraded)
                    self.schema_mode = downgraded
                    continue
                raise ModelError(f"{self.name}: bad request: {_short(exc)}") from exc
            except openai.APIStatusError as exc:
                if exc.status_code not in _RETRYABLE_STATUS:
                    raise ModelError(f"{self.name}: HTTP {exc.status_code}: {_short(exc)}") from exc
                delay = self._delay(attempt, exc)
                if attempt >= self.max_retries or delay is None:
                    raise ModelError(
                        f"{self.name}: HTTP {exc.status_code} after {attempt + 1} attempt(s)"
                    ) from exc
            except openai.APITimeoutError as exc:
                if attempt >= self.max_retries:
                    raise ModelError(
                        f"{self.name}: timed out after {attempt + 1} attempt(s)"
                    ) from exc
                delay = self._delay(attempt, None)
            except openai.APIConnectionError as exc:
                if attempt >= self.max_retries:
                    raise ModelError(
                        f"{self.name}: connection failed after {attempt + 1} attempt(s)"
                    ) from exc
                delay = self._delay(attempt, None)
            except openai.OpenAIError as exc:  # malformed body and other SDK-level failures
                raise ModelError(f"{self.name}: {_short(exc)}") from exc
            else:
                return self._response(completion, started)
            assert delay is not None
            log.info("model %s: retry %d in %.2fs", self.name, attempt + 1, delay)
            self._sleep(delay)
            attempt += 1

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            payload["seed"] = request.seed
        if request.json_schema is not None:
            if self.schema_mode == "json_schema":
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": request.schema_name,
                        "schema": request.json_schema,
                        "strict": True,
                    },
                }
            elif self.schema_mode == "json_object":
                payload["response_format"] = {"type": "json_object"}
        return payload

    def _response(self, completion: Any, started: float) -> ChatResponse:
        latency_ms = (time.perf_counter() - started) * 1000
        choices = getattr(completion, "choices", None) or []
        if not choices:
            raise ModelError(f"{self.name}: response had no choices")
        message = choices[0].message
        text = message.content if message is not None else None
        if not text:
            raise ModelError(f"{self.name}: empty completion")
        usage = getattr(completion, "usage", None)
        return ChatResponse(
            text=text,
            model=getattr(completion, "model", None) or self.name,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_ms=latency_ms,
            raw={"finish_reason": getattr(choices[0], "finish_reason", None),
                 "schema_mode": self.schema_mode},
        )

    def _delay(self, attempt: int, exc: openai.APIStatusError | None) -> float | None:
        """Seconds to wait before the next attempt; None means "do not wait that long"."""
        if exc is not None:
            retry_after = parse_retry_after(exc.response.headers)
            if retry_after is not None:
                # A server asking for minutes is better answered by the fallback model.
                return float(retry_after) if retry_after <= self.max_retry_after_s else None
        # Full jitter: spreads retries from many workers hitting the same endpoint.
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * float(1 << attempt))
        return ceiling * self._jitter()


def parse_retry_after(headers: Mapping[str, str] | Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text[:200]


def build_chat_models(settings: Settings) -> list[ChatModel]:
    """Primary model and optional secondary, from settings; empty when none is configured.

    An empty list is not an error: the pipeline then writes evidence-only drafts.
    """
    if settings.llm_base_url is None:
        return []
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    common: dict[str, Any] = {
        "api_key": api_key,
        "timeout_s": settings.llm_timeout_s,
        "max_retries": settings.llm_max_retries,
    }
    models: list[ChatModel] = [
        OpenAIChatModel(base_url=settings.llm_base_url, model=settings.llm_model, **common)
    ]
    if settings.llm_fallback_model or settings.llm_fallback_base_url:
        models.append(
            OpenAIChatModel(
                base_url=settings.llm_fallback_base_url or settings.llm_base_url,
                model=settings.llm_fallback_model or settings.llm_model,
                **common,
            )
        )
    return models
