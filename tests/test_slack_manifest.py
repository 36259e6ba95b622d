"""The app manifest matches what the code listens for and calls."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.slack import listeners


def test_manifest_covers_the_command_events_and_scopes(repo_root: Path) -> None:
    manifest = yaml.safe_load((repo_root / "deploy/slack/manifest.yaml").read_text())
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/hotwash"]
    for name in listeners.USAGE:
        assert name in commands[0]["usage_hint"]
    settings = manifest["settings"]
    assert {"message.channels", "message.groups"} <= set(
        settings["event_subscriptions"]["bot_events"])
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    urls = {commands[0]["url"], settings["interactivity"]["request_url"],
            settings["event_subscriptions"]["request_url"]}
    assert len(urls) == 1 and urls.pop().endswith("/slack/events")

    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # Every Web API method the Slack room calls needs its scope granted.
    needed = {"chat_postMessage": "chat:write", "chat_update": "chat:write",
              "chat_postEphemeral": "chat:write", "usergroups_users_list": "usergroups:read"}
    source = "".join(p.read_text() for p in (repo_root / "bot/slack").glob("*.py"))
    for method, scope in needed.items():
        assert re.search(rf"\b{method}\(", source), method
        assert scope in scopes
    assert "commands" in scopes and "channels:history" in scopes
