"""The grounding check: a model's answer is kept only as far as the evidence supports it.

After the model answers:

* every cited id must exist in the evidence the model was shown; others are removed;
* every quoted string must appear (whitespace- and case-insensitively) in that evidence;
  a fabricated quote is removed and makes its cause unsupported;
* a cause or step left with no valid citation is kept but marked ``supported=False`` and
  moved after the supported ones, so the approver sees it was a guess;
* the answer is scanned for secrets with the one :class:`~bot.redaction.Redactor`.

The grounding score is the mean, over causes and steps, of the share of each claim's
references (citations + quotes) that checked out; an answer with no claims scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from bot.domain import Evidence, EvidenceKind
from bot.drafting import Cause, NextStep, TriageOutput
from bot.redaction import Redactor

_ID = re.compile(r"^\[?\s*([A-Za-z])\s*-?\s*(\d+)")
_SPACE = re.compile(r"\s+")


def normalise_id(raw: str) -> str:
    """'[e2]', 'E-2', 'R1#Diagnosis' -> 'E2', 'R1'; anything else unchanged."""
    match = _ID.match(raw.strip())
    return f"{match.group(1).upper()}{match.group(2)}" if match else raw.strip()


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


@dataclass(frozen=True)
class GroundingReport:
    """The checked answer and what the check found."""

    output: TriageOutput
    score: float
    invalid_ids: tuple[str, ...] = ()
    missing_quotes: tuple[str, ...] = ()
    unsupported: int = 0
    secrets_redacted: int = 0

    def notes(self) -> tuple[str, ...]:
        """Degradations worth showing the approver, one line each."""
        notes = []
        if self.invalid_ids:
            notes.append("Removed citations to evidence that does not exist: "
                         + ", ".join(sorted(set(self.invalid_ids))) + ".")
        if self.missing_quotes:
            notes.append(f"Removed {len(self.missing_quotes)} quote(s) not found in the evidence.")
        if self.unsupported:
            notes.append(f"{self.unsupported} claim(s) have no valid evidence and are marked "
                         "unsupported.")
        if self.secrets_redacted:
            notes.append(f"Redacted {self.secrets_redacted} secret-like string(s) from the "
                         "model's answer.")
        return tuple(notes)


def check_citations(cited: Iterable[str], *, known: Collection[str],
                    invalid: list[str]) -> list[str]:
    """The cited ids that exist in ``known`` (normalised, deduplicated, in order); every
    cited id that does not exist is appended to ``invalid``. Shared by triage and postmortem
    grounding so both count a citation the same way."""
    valid: list[str] = []
    for raw in cited:
        norm = normalise_id(raw)
        if norm in known:
            if norm not in valid:
                valid.append(norm)
        else:
            invalid.append(raw)
    return valid


def ground(output: TriageOutput, evidence: Evidence, *, redactor: Redactor) -> GroundingReport:
    """Check ``output`` against ``evidence`` (what the model was shown)."""
    items = evidence.by_id()
    texts = {item_id: _norm(item.text + "\n" + item.title) for item_id, item in items.items()}
    everything = "\n".join(texts.values())
    invalid: list[str] = []
    missing: list[str] = []
    claim_scores: list[float] = []

    def valid_ids(raw: list[str]) -> list[str]:
        return check_citations(raw, known=items.keys(), invalid=invalid)

    causes: list[Cause] = []
    for cause in output.likely_causes:
        ids = valid_ids(cause.evidence_ids)
        quotes = []
        for quote in cause.quotes:
            needle = _norm(quote.strip().strip('"\''))
            cited_text = "\n".join(texts[i] for i in ids)
            if needle and (needle in cited_text or needle in everything):
                quotes.append(quote)
            else:
                missing.append(quote)
        refs = len(cause.evidence_ids) + len(cause.quotes)
        good = len(ids) + len(quotes)
        fabricated = len(quotes) < len(cause.quotes)
        supported = bool(ids) and not fabricated
        claim_scores.append(good / refs if refs else 0.0)
        causes.append(cause.model_copy(update={"evidence_ids": ids, "quotes": quotes,
                                               "supported": supported}))

    steps: list[NextStep] = []
    for step in output.next_steps:
        ids = valid_ids(step.cites)
        claim_scores.append(len(ids) / len(step.cites) if step.cites else 0.0)
        steps.append(step.model_copy(update={"cites": ids, "supported": bool(ids)}))

    runbook_ids = {i for i, item in items.items() if item.kind == EvidenceKind.RUNBOOK}
    related = []
    for raw in output.related_runbooks:
        norm = normalise_id(raw)
        if norm in runbook_ids:
            if norm not in related:
                related.append(norm)
        else:
            invalid.append(raw)

    # Stable sort: supported claims keep their rank, unsupported ones go last.
    causes.sort(key=lambda c: not c.supported)
    steps.sort(key=lambda s: not s.supported)
    checked = output.model_copy(update={"likely_causes": causes, "next_steps": steps,
                                        "related_runbooks": related})
    checked, secrets = _redact_output(checked, redactor)
    unsupported = sum(1 for c in causes if not c.supported) + sum(
        1 for s in steps if not s.supported)
    score = sum(claim_scores) / len(claim_scores) if claim_scores else 0.0
    return GroundingReport(output=checked, score=round(score, 3), invalid_ids=tuple(invalid),
                           missing_quotes=tuple(missing), unsupported=unsupported,
                           secrets_redacted=secrets)


def _redact_output(output: TriageOutput, redactor: Redactor) -> tuple[TriageOutput, int]:
    """Run every free-text field of the answer through the redactor."""
    total = 0

    def clean(text: str) -> str:
        nonlocal total
        redacted, hits = redactor.redact(text)
        total += hits
        return redacted

    def clean_opt(text: str | None) -> str | None:
        return None if text is None else clean(text)

    causes = [c.model_copy(update={"cause": clean(c.cause), "quotes": [clean(q) for q in c.quotes]})
              for c in output.likely_causes]
    steps = [s.model_copy(update={"step": clean(s.step), "command": clean_opt(s.command)})
             for s in output.next_steps]
    redacted = output.model_copy(update={
        "summary": clean(output.summary),
        "severity_rationale": clean(output.severity_rationale),
        "likely_causes": causes, "next_steps": steps,
        "open_questions": [clean(q) for q in output.open_questions],
    })
    return redacted, total
