"""SlackPoster: per-channel pacing and 429 handling, over a real WebClient."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from slack_sdk.errors import SlackApiError

from bot.settings import Settings
from bot.slack.poster import ChannelPacer, SlackPoster, build_web_client
from tests.fakes.slack_api import BOT_TOKEN, FakeSlackAPI


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as server:
        yield server


def _poster(fake: FakeSlackAPI, *, interval_s: float = 1.0, retries: int = 3) -> SlackPoster:
    settings = Settings(slack_api_url=fake.url, slack_bot_token=BOT_TOKEN)  # type: ignore[arg-type]
    client = build_web_client(settings, rate_limit_retries=retries)
    return SlackPoster(client=client, pacer=ChannelPacer(interval_s=interval_s))


def test_pacer_spaces_messages_per_channel() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    pacer = ChannelPacer(interval_s=1.0, clock=lambda: now[0], sleep=sleep)
    waits = [pacer.wait("C1") for _ in range(3)]
    assert waits == [0.0, 1.0, 2.0]
    assert pacer.wait("C2") == 0.0  # another channel is not held up
    now[0] += 10
    assert pacer.wait("C1") == 0.0  # a quiet channel posts at once again


def test_burst_in_one_channel_is_spread_out(fake: FakeSlackAPI) -> None:
    poster = _poster(fake, interval_s=0.2)
    for n in range(4):
        poster.post(channel="C1", text=f"m{n}")
    times = [c.at for c in fake.calls_to("chat.postMessage")]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(gap >= 0.18 for gap in gaps), gaps


def test_429_is_retried_after_the_retry_after_header(fake: FakeSlackAPI) -> None:
    poster = _poster(fake, interval_s=0.0)
    fake.inject("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    ts = poster.post(channel="C1", text="hello")
    assert time.monotonic() - started >= 0.95
    assert ts == fake.messages["C1"][0]["ts"]
    assert len(fake.calls_to("chat.postMessage")) == 2


def test_update_and_ephemeral(fake: FakeSlackAPI) -> None:
    poster = _poster(fake, interval_s=0.0)
    ts = poster.post(channel="C1", text="working", thread_ts="1.1")
    poster.update(channel="C1", ts=ts, text="done", blocks=[
        {"type": "section", "text": {"type": "mrkdwn", "text": "done"}}])
    assert fake.messages["C1"][0]["text"] == "done"
    assert fake.messages["C1"][0]["thread_ts"] == "1.1"
    poster.post_ephemeral(channel="C1", user="U1", text="only you")
    assert fake.calls_to("chat.postEphemeral")[0].args["user"] == "U1"


def test_paced_poster_never_trips_slacks_channel_limit(fake: FakeSlackAPI) -> None:
    fake.post_interval_s = 0.2  # the fake answers 429 to anything faster
    unpaced = _poster(fake, interval_s=0.0, retries=0)
    unpaced.post(channel="C1", text="a")
    with pytest.raises(SlackApiError):
        unpaced.post(channel="C1", text="b")
    assert fake.rate_limited == 1
    paced = _poster(fake, interval_s=0.25)
    time.sleep(0.25)
    for n in range(3):
        paced.post(channel="C1", text=f"m{n}")
    assert fake.rate_limited == 1
