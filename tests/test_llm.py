"""The OpenAI-compatible adapter against a fake server over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from bot.llm import OpenAIChatModel, build_chat_models, parse_retry_after
from bot.ports import ChatMessage, ChatRequest, ModelError
from bot.settings import Settings
from tests.fakes.openai_server import Delay, FakeOpenAI, Reply, Status

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
          "additionalProperties": False}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _model(fake: FakeOpenAI, **kw: object) -> tuple[OpenAIChatModel, list[float]]:
    sleeps: list[float] = []
    options: dict[str, object] = {"timeout_s": 5.0, "max_retries": 2, "sleep": sleeps.append,
                                  "jitter": lambda: 1.0}
    options.update(kw)
    model = OpenAIChatModel(base_url=fake.base_url, model="fake-model", **options)  # type: ignore[arg-type]
    return model, sleeps


def _request(schema: dict[str, object] | None = SCHEMA) -> ChatRequest:
    return ChatRequest(messages=(ChatMessage(role="system", content="be terse"),
                                 ChatMessage(role="user", content="hello")),
                       json_schema=schema, max_tokens=77, temperature=0.3, seed=11)


def test_sends_decoding_params_and_json_schema_and_reads_usage(fake: FakeOpenAI) -> None:
    fake.script(Reply({"ok": True}))
    model, _ = _model(fake)
    try:
        response = model.complete(_request())
    finally:
        model.close()
    assert json.loads(response.text) == {"ok": True}
    assert response.prompt_tokens > 0 and response.completion_tokens > 0
    sent = fake.chat_requests()[0]
    assert sent["model"] == "fake-model"
    assert sent["max_tokens"] == 77 and sent["temperature"] == 0.3 and sent["seed"] == 11
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == SCHEMA


def test_api_key_is_sent_as_bearer(fake: FakeOpenAI) -> None:
    fake.script(Reply("x"))
    model = OpenAIChatModel(base_url=fake.base_url, model="m", api_key="sk-test-123")
    try:
        model.complete(_request(None))
    finally:
        model.close()
    headers = {k.lower(): v for k, v in fake.requests[-1]["headers"].items()}
    assert headers["authorization"] == "Bearer sk-test-123"


def test_server_without_json_schema_gets_json_object_and_is_remembered() -> None:
    with FakeOpenAI(reject_json_schema=True) as fake:
        fake.script(Reply({"ok": True}), Reply({"ok": False}))
        model, _ = _model(fake)
        try:
            model.complete(_request())
            model.complete(_request())
        finally:
            model.close()
        formats = [(r.get("response_format") or {}).get("type") for r in fake.chat_requests()]
    # first try json_schema (rejected), then json_object; the second call goes straight there
    assert formats == ["json_schema", "json_object", "json_object"]


def test_500_is_retried_with_backoff_then_succeeds(fake: FakeOpenAI) -> None:
    fake.script(Status(500), Status(502), Reply("fine"))
    model, sleeps = _model(fake, backoff_base_s=0.5)
    try:
        assert model.complete(_request(None)).text == "fine"
    finally:
        model.close()
    assert sleeps == [0.5, 1.0]  # exponential, jitter pinned to its maximum
    assert len(fake.chat_requests()) == 3


def test_jitter_spreads_the_wait(fake: FakeOpenAI) -> None:
    fake.script(Status(503), Reply("fine"))
    model, sleeps = _model(fake, jitter=lambda: 0.25, backoff_base_s=2.0)
    try:
        model.complete(_request(None))
    finally:
        model.close()
    assert sleeps == [0.5]


def test_429_respects_retry_after(fake: FakeOpenAI) -> None:
    fake.script(Status(429, headers={"Retry-After": "3"}), Reply("fine"))
    model, sleeps = _model(fake)
    try:
        assert model.complete(_request(None)).text == "fine"
    finally:
        model.close()
    assert sleeps == [3.0]


def test_429_asking_for_minutes_gives_up_at_once_so_the_fallback_can_answer(
    fake: FakeOpenAI,
) -> None:
    fake.script(Status(429, headers={"Retry-After": "600"}), Reply("late"))
    model, sleeps = _model(fake, max_retry_after_s=30.0)
    try:
        with pytest.raises(ModelError, match="429"):
            model.complete(_request(None))
    finally:
        model.close()
    assert sleeps == []


def test_persistent_500_raises_model_error_after_retries(fake: FakeOpenAI) -> None:
    fake.script(Status(500), Status(500), Status(500), Reply("too late"))
    model, sleeps = _model(fake, max_retries=2)
    try:
        with pytest.raises(ModelError, match="after 3 attempt"):
            model.complete(_request(None))
    finally:
        model.close()
    assert len(sleeps) == 2


def test_auth_error_is_not_retried(fake: FakeOpenAI) -> None:
    fake.script(Status(401))
    model, sleeps = _model(fake)
    try:
        with pytest.raises(ModelError, match="401"):
            model.complete(_request(None))
    finally:
        model.close()
    assert sleeps == [] and len(fake.chat_requests()) == 1


def test_timeout_raises_model_error(fake: FakeOpenAI) -> None:
    fake.script(Delay(5), Delay(5))
    model, sleeps = _model(fake, timeout_s=0.2, max_retries=1)
    try:
        with pytest.raises(ModelError, match="timed out after 2"):
            model.complete(_request(None))
    finally:
        model.close()
    assert len(sleeps) == 1


def test_unreachable_endpoint_raises_model_error() -> None:
    model = OpenAIChatModel(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0,
                            timeout_s=1.0)
    try:
        with pytest.raises(ModelError, match="connection failed"):
            model.complete(_request(None))
    finally:
        model.close()


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_build_chat_models_from_settings() -> None:
    assert build_chat_models(Settings()) == []
    models = build_chat_models(Settings(llm_base_url="http://127.0.0.1:1/v1", llm_model="a",
                                        llm_fallback_model="b"))
    try:
        assert [m.name for m in models] == ["a", "b"]
    finally:
        for m in models:
            assert isinstance(m, OpenAIChatModel)
            m.close()


def test_fake_streams_with_usage_for_the_real_client(fake: FakeOpenAI) -> None:
    fake.script(Reply({"ok": True}))
    client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
    try:
        stream = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True})
        text, usage = "", None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage:
                usage = chunk.usage
        assert [m.id for m in client.models.list()] == ["fake-model"]
    finally:
        client.close()
    assert json.loads(text) == {"ok": True}
    assert usage is not None and usage.completion_tokens > 0
