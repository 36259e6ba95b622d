"""The fake Slack Web API behaves like Slack where our code (and issue 7's) relies on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import BOT_TOKEN, FakeSlackAPI


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as server:
        yield server


@pytest.fixture
def client(fake: FakeSlackAPI) -> WebClient:
    return WebClient(base_url=fake.url, token=BOT_TOKEN)


def test_history_and_replies_paginate(fake: FakeSlackAPI, client: WebClient) -> None:
    root = fake.add_message("C1", text="alert")
    for n in range(5):
        fake.add_message("C1", text=f"reply {n}", thread_ts=root["ts"])
    fake.add_message("C1", text="later")
    sizes, texts = [], []
    for page in client.conversations_replies(channel="C1", ts=root["ts"], limit=2):
        sizes.append(len(page["messages"]))  # a SlackResponse page is reused: read it now
        texts.extend(m["text"] for m in page["messages"])
    assert sizes == [2, 2, 2]
    assert texts == ["alert"] + [f"reply {n}" for n in range(5)]
    history = client.conversations_history(channel="C1")
    assert [m["text"] for m in history["messages"]] == ["later", "alert"]  # newest first


def test_records_calls_and_injects_errors(fake: FakeSlackAPI, client: WebClient) -> None:
    fake.inject("chat.postMessage", status=200, error="not_in_channel", retry_after=None)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response["error"] == "not_in_channel"
    posted = client.chat_postMessage(channel="C1", text="y", blocks=[
        {"type": "section", "text": {"type": "mrkdwn", "text": "y"}}])
    assert posted["ok"] and posted["channel"] == "C1" and posted["ts"]
    call = fake.calls_to("chat.postMessage")[1]
    assert call.token == BOT_TOKEN and call.args["blocks"][0]["type"] == "section"


def test_usergroups_users_and_views(fake: FakeSlackAPI, client: WebClient) -> None:
    fake.add_usergroup("S0ONCALL", ["U1", "U2"])
    fake.add_user("U1", name="Ada")
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U1", "U2"]
    assert client.users_info(user="U1")["user"]["real_name"] == "Ada"
    view = client.views_open(trigger_id="t", view={"type": "modal", "title": {
        "type": "plain_text", "text": "x"}, "blocks": []})
    assert view["view"]["id"].startswith("V")
    with pytest.raises(SlackApiError):
        WebClient(base_url=fake.url).auth_test()  # no token
