"""Shared test fixtures. Fakes for Slack, Elasticsearch and the model live under tests/fakes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_KEEP = {"HOTWASH_TEST_POSTGRES_URL", "HOTWASH_EVAL_BASE_URL", "HOTWASH_EVAL_MODEL",
         "HOTWASH_EVAL_API_KEY"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No HOTWASH_* setting leaks in from the machine; each test runs in its own folder."""
    for key in list(os.environ):
        if key.startswith("HOTWASH_") and key not in _KEEP:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    """The checkout's top folder (tests run with the cwd in a temporary folder)."""
    return REPO_ROOT
