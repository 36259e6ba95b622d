"""Settings: one reader of the environment, one-line errors, masked secrets."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import SettingsError, load_settings


def test_defaults_use_embedded_sqlite_under_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTWASH_DATA_DIR", "/srv/hotwash")
    settings = load_settings()
    assert settings.effective_database_url == "sqlite:////srv/hotwash/hotwash.db"
    assert settings.is_embedded_db
    assert not settings.model_configured


def test_bad_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTWASH_HTTP_PORT", "not-a-port")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("HOTWASH_HTTP_PORT:")
    assert "\n" not in message


def test_bad_redaction_pattern_stops_start_up_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Before this check an unterminated group crashed every triage with a traceback.
    monkeypatch.setenv("HOTWASH_REDACTION_PATTERNS", '["ORDER-\\\\d+", "("]')
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith("HOTWASH_REDACTION_PATTERNS:")
    assert "not a valid regular expression" in str(info.value)


def test_cli_reports_bad_setting_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTWASH_LOG_LEVEL", "LOUD")
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 2
    assert "HOTWASH_LOG_LEVEL" in result.output
    assert "Traceback" not in result.output


def test_config_check_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTWASH_SLACK_BOT_TOKEN", "xoxb-very-secret-token")
    monkeypatch.setenv("HOTWASH_DATABASE_URL", "postgresql+psycopg://bot:hunter2@db:5432/hotwash")
    result = CliRunner().invoke(app, ["config", "check", "--json"])
    assert result.exit_code == 0, result.output
    assert "xoxb-very-secret-token" not in result.output
    assert "hunter2" not in result.output
    values = json.loads(result.output)
    assert values["slack_bot_token"] == "**********"
    assert values["effective_database_url"] == "postgresql+psycopg://bot:****@db:5432/hotwash"
