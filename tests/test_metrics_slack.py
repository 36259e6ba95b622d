"""Slack Web API errors and 429s are counted for every call through the one WebClient,
against the fake Slack Web API over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk.errors import SlackApiError

from bot import metrics
from bot.settings import Settings
from bot.slack.call_metrics import SlackCallMetrics, api_method, observe
from bot.slack.poster import SlackPoster, build_web_client
from tests.fakes.slack_api import BOT_TOKEN, FakeSlackAPI


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        yield fake


def poster_for(fake: FakeSlackAPI) -> SlackPoster:
    settings = Settings(slack_bot_token=BOT_TOKEN, slack_api_url=fake.url)
    return SlackPoster(client=build_web_client(settings))


def test_a_429_is_counted_and_still_retried(slack: FakeSlackAPI) -> None:
    labels = {"method": "chat.postMessage"}
    before = metrics.sample("hotwash_slack_rate_limited_total", labels)
    slack.inject("chat.postMessage", status=429, retry_after=0)
    ts = poster_for(slack).post(channel="C0ALERTS", text="draft")
    assert ts  # the rate-limit handler behind ours retried and the post went through
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert metrics.sample("hotwash_slack_rate_limited_total", labels) == before + 1


def test_slack_error_codes_are_counted_by_method(slack: FakeSlackAPI) -> None:
    labels = {"method": "chat.update", "error": "message_not_found"}
    before = metrics.sample("hotwash_slack_api_errors_total", labels)
    slack.inject("chat.update", status=200, error="message_not_found")
    with pytest.raises(SlackApiError):
        poster_for(slack).update(channel="C0ALERTS", ts="1.2", text="x")
    assert metrics.sample("hotwash_slack_api_errors_total", labels) == before + 1


def test_successful_calls_count_nothing(slack: FakeSlackAPI) -> None:
    before = sum(v for name, v in _errors())
    poster_for(slack).post(channel="C0ALERTS", text="fine")
    assert sum(v for name, v in _errors()) == before


def _errors() -> list[tuple[str, float]]:
    return [(s.name, s.value) for f in metrics.REGISTRY.collect() for s in f.samples
            if s.name == "hotwash_slack_api_errors_total"]


def test_observe_installs_once_and_first() -> None:
    class Client:
        retry_handlers: list[object] = ["rate-limit"]

    client = observe(observe(Client()))
    assert isinstance(client.retry_handlers[0], SlackCallMetrics)
    assert len(client.retry_handlers) == 2
    assert api_method("http://127.0.0.1:1/api/chat.postMessage?x=1") == "chat.postMessage"
