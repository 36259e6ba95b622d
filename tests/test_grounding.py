"""Grounding check and structured-output parsing, on fixed evidence."""

from __future__ import annotations

import json

import pytest

from bot.context import fit_budget, gather
from bot.domain import Evidence
from bot.drafting import (
    OutputError,
    TriageOutput,
    draft_from_evidence,
    parse_triage,
    triage_json_schema,
)
from bot.grounding import ground, normalise_id
from bot.redaction import Redactor
from tests.inmemory import (
    POOL_RUNBOOK,
    InMemoryLogSource,
    InMemoryRunbookIndex,
    checkout_alert,
    checkout_logs,
)


@pytest.fixture
def evidence() -> Evidence:
    return gather(alert=checkout_alert(), logs=InMemoryLogSource(checkout_logs()),
                  runbooks=InMemoryRunbookIndex([POOL_RUNBOOK]), redactor=Redactor())


def _output(**changes: object) -> TriageOutput:
    base: dict[str, object] = {
        "summary": "Checkout 5xx after deploy.", "severity": "SEV2",
        "severity_rationale": "customer-facing",
        "likely_causes": [{"cause": "DB pool exhausted", "confidence": "high",
                           "evidence_ids": ["E2"],
                           "quotes": ["connection is NOT available,   request timed out"]}],
        "next_steps": [{"step": "Raise the pool size", "command": None, "cites": ["R1"]}],
        "open_questions": [], "related_runbooks": ["R1"],
    }
    base.update(changes)
    return TriageOutput.model_validate(base)


def test_a_fully_cited_answer_scores_one(evidence: Evidence) -> None:
    report = ground(_output(), evidence, redactor=Redactor())
    assert report.score == 1.0 and report.notes() == ()
    assert report.output.likely_causes[0].supported


def test_unknown_ids_are_removed_and_uncited_causes_go_last_marked(evidence: Evidence) -> None:
    output = _output(likely_causes=[
        {"cause": "Invented", "confidence": "high", "evidence_ids": ["E42"], "quotes": []},
        {"cause": "Pool", "confidence": "medium", "evidence_ids": ["[e2]", "E77"],
         "quotes": []},
    ], related_runbooks=["R1", "R5"])
    report = ground(output, evidence, redactor=Redactor())
    causes = report.output.likely_causes
    assert [c.cause for c in causes] == ["Pool", "Invented"]
    assert causes[0].evidence_ids == ["E2"] and causes[0].supported
    assert causes[1].evidence_ids == [] and not causes[1].supported
    assert report.output.related_runbooks == ["R1"]
    assert set(report.invalid_ids) == {"E42", "E77", "R5"}
    assert report.unsupported == 1
    # claims: Invented 0/1, Pool 1/2, step 1/1 -> mean 0.5
    assert report.score == 0.5


def test_a_fabricated_quote_makes_its_cause_unsupported(evidence: Evidence) -> None:
    output = _output(likely_causes=[{
        "cause": "Disk full", "confidence": "high", "evidence_ids": ["E2"],
        "quotes": ["No space left on device"]}])
    report = ground(output, evidence, redactor=Redactor())
    cause = report.output.likely_causes[0]
    assert not cause.supported and cause.quotes == []
    assert report.missing_quotes == ("No space left on device",)
    assert any("quote" in n for n in report.notes())


def test_runbook_only_citations_cannot_be_claimed_as_related_if_not_runbooks(
    evidence: Evidence,
) -> None:
    report = ground(_output(related_runbooks=["E2"]), evidence, redactor=Redactor())
    assert report.output.related_runbooks == []


def test_an_answer_with_no_claims_scores_zero(evidence: Evidence) -> None:
    report = ground(_output(likely_causes=[], next_steps=[]), evidence, redactor=Redactor())
    assert report.score == 0.0


def test_secrets_in_commands_are_redacted(evidence: Evidence) -> None:
    output = _output(next_steps=[{
        "step": "Log in", "cites": ["R1"],
        "command": "psql postgresql://admin:S3cretPass@db.shop:5432/checkout"}])
    report = ground(output, evidence, redactor=Redactor())
    command = report.output.next_steps[0].command
    assert command is not None and "S3cretPass" not in command
    assert report.secrets_redacted == 1


def test_normalise_id() -> None:
    assert normalise_id("[e2]") == "E2"
    assert normalise_id("R1#Mitigation") == "R1"
    assert normalise_id("E-12") == "E12"
    assert normalise_id("runbook") == "runbook"


def test_evidence_only_draft_passes_its_own_grounding(evidence: Evidence) -> None:
    output = draft_from_evidence(fit_budget(evidence, budget_tokens=6000))
    report = ground(output, evidence, redactor=Redactor())
    assert report.score == 1.0 and report.unsupported == 0
    assert output.summary.startswith("Written without a model")


def test_evidence_only_draft_without_runbooks_or_logs_says_so() -> None:
    bare = gather(alert=checkout_alert(severity=None, labels={}),
                  logs=InMemoryLogSource(), runbooks=InMemoryRunbookIndex(),
                  redactor=Redactor())
    output = draft_from_evidence(bare)
    assert output.severity == "SEV3"
    assert output.likely_causes == []
    assert any("No runbook matched" in q for q in output.open_questions)
    assert "No new log templates" in output.summary


# --- parsing weak-model output -----------------------------------------------------------

GOOD = _output().model_dump(exclude={"likely_causes": {0: {"supported"}}})


def test_parse_accepts_code_fences_prose_and_trailing_commas() -> None:
    text = "Here you go:\n```json\n" + json.dumps(GOOD)[:-1] + ",}\n```\nHope it helps"
    assert parse_triage(text).severity == "SEV2"


def test_parse_coerces_common_slips() -> None:
    data = dict(GOOD, severity="sev 1", open_questions="Was there a deploy?")
    data["likely_causes"] = [{"cause": "x", "confidence": 0.85, "evidence_ids": "E2, E3",
                              "quotes": "one quote"}]
    parsed = parse_triage(json.dumps(data))
    assert parsed.severity == "SEV1"
    assert parsed.likely_causes[0].confidence == "high"
    assert parsed.likely_causes[0].evidence_ids == ["E2", "E3"]
    assert parsed.likely_causes[0].quotes == ["one quote"]
    assert parsed.open_questions == ["Was there a deploy?"]


@pytest.mark.parametrize("text,reason", [
    ("I think the database is down.", "no JSON object"),
    ('{"summary": "x", "severity": "SEV9"}', "severity"),
    ('{"summary": "x"}', "severity"),
    ('{"summary": "x", "severity": "SEV2", ', "invalid JSON"),  # cut off at max_tokens
    ("[1, 2]", "no JSON object"),
])
def test_parse_rejects_unusable_answers_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(OutputError, match=reason):
        parse_triage(text)


def test_json_schema_is_strict_mode_compatible() -> None:
    schema = triage_json_schema()
    assert "$defs" not in json.dumps(schema) and "$ref" not in json.dumps(schema)

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node["additionalProperties"] is False
                assert set(node["required"]) == set(node["properties"])
                assert "supported" not in node["properties"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(GOOD | {"likely_causes": [
        {k: v for k, v in c.items() if k != "supported"} for c in GOOD["likely_causes"]],
        "next_steps": [{k: v for k, v in s.items() if k != "supported"}
                       for s in GOOD["next_steps"]]}, schema)


def test_schema_asks_for_a_runbook_only_when_runbooks_were_shown() -> None:
    shown = triage_json_schema(["E1", "E2", "R1", "R2"])["properties"]["related_runbooks"]
    assert shown["minItems"] == 1 and shown["items"]["enum"] == ["R1", "R2"]
    # No runbook applied (retrieval abstained): an empty list is the honest answer.
    assert "minItems" not in triage_json_schema(["E1"])["properties"]["related_runbooks"]
