"""Triage quality cases (tests/evals/<case>/): real log source, real runbook index, real
pipeline, and a model endpoint.

By default the model is the fake server, which answers only from the evidence it was sent;
then these cases check the plumbing end to end: the right runbook is retrieved, reaches the
prompt and is cited; the new error template is ranked as a cause; citations survive the
grounding check; injected instructions change nothing. Against a real model they check its
judgement too:

    HOTWASH_EVAL_BASE_URL=http://127.0.0.1:8080/v1 HOTWASH_EVAL_MODEL=qwen2.5-0.5b \\
        .venv/bin/pytest -m llm tests/test_evals.py

With HOTWASH_EVAL_REPORT=<file> each case also appends one JSON line of figures (author,
grounding score, tokens, latency, schema mode, notes) before its assertions run, so failing
cases are counted too; benchmarks/local_model.sh summarises them. HOTWASH_EVAL_TIMEOUT_S
(default 300) is the per-request timeout against a real endpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.alerts import parse_payload
from bot.audit.store import build_store
from bot.domain import DraftStatus
from bot.llm import build_chat_models
from bot.logsource import build_log_source
from bot.pipeline import triage
from bot.ports import RunbookIndex
from bot.retrieval import build_runbook_index
from bot.services import Services
from bot.settings import Settings
from tests.fakes.openai_server import FakeOpenAI

# A real model on a small CPU takes minutes per draft. The test must outlast the whole
# fallback chain (first call + repair call, each with one retry on timeout), or pytest-timeout
# kills it before the pipeline falls back and the case records nothing.
REAL_ENDPOINT = bool(os.environ.get("HOTWASH_EVAL_BASE_URL"))
REQUEST_TIMEOUT_S = float(os.environ.get("HOTWASH_EVAL_TIMEOUT_S") or 300)
EVAL_RETRIES = 1
CASE_TIMEOUT_S = 2 * (EVAL_RETRIES + 1) * REQUEST_TIMEOUT_S + 120

pytestmark = [pytest.mark.llm, *([pytest.mark.timeout(CASE_TIMEOUT_S)] if REAL_ENDPOINT else [])]

EVALS = Path(__file__).parent / "evals"
CASES = sorted(p.name for p in EVALS.iterdir() if (p / "expected.yaml").exists())
# Read at import, before conftest clears HOTWASH_* and chdirs each test into its tmp_path.
REPORT = (Path(os.environ["HOTWASH_EVAL_REPORT"]).resolve()
          if os.environ.get("HOTWASH_EVAL_REPORT") else None)


def test_there_are_at_least_eight_cases() -> None:
    assert len(CASES) >= 8


@pytest.fixture(scope="module")
def endpoint() -> Iterator[dict[str, Any]]:
    """A real endpoint from HOTWASH_EVAL_* or, by default, the fake server."""
    base_url = os.environ.get("HOTWASH_EVAL_BASE_URL")
    if base_url:
        yield {"llm_base_url": base_url,
               "llm_model": os.environ.get("HOTWASH_EVAL_MODEL", "default"),
               "llm_api_key": os.environ.get("HOTWASH_EVAL_API_KEY"),
               "llm_timeout_s": REQUEST_TIMEOUT_S}
        return
    with FakeOpenAI(model="fake-model") as fake:
        yield {"llm_base_url": fake.base_url, "llm_model": "fake-model"}


@pytest.fixture(scope="module")
def runbooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunbookIndex]]:
    """Every case's runbooks in one index: each case's runbook competes with the others."""
    root = tmp_path_factory.mktemp("eval-runbooks")
    folder = root / "runbooks"
    folder.mkdir()
    for case in CASES:
        for md in (EVALS / case / "runbooks").glob("*.md"):
            shutil.copy(md, folder / md.name)
    settings = Settings(runbooks_dir=folder, data_dir=root / "data")
    yield folder, build_runbook_index(settings)


def _report(case: str, draft: dict[str, Any]) -> None:
    """Append this case's figures to HOTWASH_EVAL_REPORT, when set."""
    if REPORT is None:
        return
    calls = draft["params"].get("model_calls", [])
    line = {"case": case, "author": draft["content"]["author"], "model": draft["model"],
            "grounding": draft["grounding_score"], "prompt_tokens": draft["prompt_tokens"],
            "completion_tokens": draft["completion_tokens"], "latency_ms": draft["latency_ms"],
            "model_calls": calls, "notes": draft["notes"]}
    with REPORT.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def _keyword_found(keyword: str, text: str) -> bool:
    return any(alt.strip().lower() in text for alt in keyword.split("|"))


@pytest.mark.parametrize("case", CASES)
def test_case(case: str, tmp_path: Path, endpoint: dict[str, Any],
              runbooks: tuple[Path, RunbookIndex]) -> None:
    folder = EVALS / case
    expected = yaml.safe_load((folder / "expected.yaml").read_text(encoding="utf-8"))
    alert = parse_payload((folder / "alert.json").read_text(encoding="utf-8"))[0]
    settings = Settings(data_dir=tmp_path / "data", runbooks_dir=runbooks[0],
                        log_files=[folder / "logs"], llm_max_retries=EVAL_RETRIES,
                        **endpoint)
    services = Services(settings=settings, store=build_store(settings), runbooks=runbooks[1],
                        logs=build_log_source(settings), models=build_chat_models(settings))
    try:
        draft = triage(alert=alert, services=services)
        assert draft.id is not None
        assert services.store.get_draft(draft_id=draft.id).status == DraftStatus.PENDING
    finally:
        services.close()
        for model in services.models:
            close = getattr(model, "close", None)
            if close is not None:
                close()
    content = draft.content
    _report(case, draft.model_dump(mode="json"))
    assert content["author"] == "model", draft.notes

    # citation plumbing: whatever survived grounding points at evidence that exists
    index = {e["id"]: e for e in content["evidence"]}
    cited = {i for c in content["likely_causes"] for i in c["evidence_ids"]}
    cited |= {i for s in content["next_steps"] for i in s["cites"]}
    cited |= set(content["related_runbooks"])
    assert cited <= set(index)
    assert draft.grounding_score is not None
    assert draft.grounding_score >= expected["min_grounding"], draft.notes

    # the runbook that applies is retrieved, shown to the model and cited
    cited_runbooks = {index[i]["source"].removeprefix("runbook:") for i in cited
                      if index[i]["kind"] == "runbook"}
    assert expected["must_cite_runbook"] in cited_runbooks, (cited_runbooks, draft.notes)

    # the cause is named, with evidence behind it
    supported = [c for c in content["likely_causes"] if c["supported"]]
    cause_text = " ".join(c["cause"] + " " + " ".join(c["quotes"]) for c in supported).lower()
    for keyword in expected["cause_keywords"]:
        assert _keyword_found(keyword, cause_text), (keyword, cause_text)

    # injected instructions are data: the draft does not say, in its own voice, what they
    # asked for (causes may quote the hostile log line, so they are not checked here)
    prose = " ".join([content["summary"], content["severity_rationale"],
                      *(s["step"] for s in content["next_steps"])]).lower()
    for phrase in expected.get("forbidden_phrases", []):
        assert not re.search(rf"\b{re.escape(phrase.lower())}\b", prose), phrase
