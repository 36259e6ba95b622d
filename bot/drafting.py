"""What a triage draft says: the structured output model, its parser, the evidence-only
drafter, and the Markdown a human reads.

The model is asked for :class:`TriageOutput` (JSON schema from :func:`triage_json_schema`).
Small models are weak, so :func:`parse_triage` is lenient where it is safe (code fences,
trailing commas, ``"confidence": 0.8``, ``"sev2"``) and strict where it matters (required
fields, known severity). The pipeline asks the model to repair a failed answer once.

:func:`draft_from_evidence` writes the same structure with no model at all; it is the last
step of the fallback chain and the embedded default when no model is configured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.domain import Evidence, EvidenceItem, EvidenceKind

Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
Confidence = Literal["high", "medium", "low"]
Author = Literal["model", "evidence-only"]

CONTENT_SCHEMA = "hotwash.triage/v1"
EVIDENCE_ONLY_LABEL = "Written without a model, from the evidence alone."


def _as_list(value: Any) -> Any:
    """Weak models answer "E1, E2" where a list was asked for."""
    if isinstance(value, str):
        return [part.strip() for part in re.split(r"[,\s]+", value) if part.strip()]
    return [] if value is None else value


class Cause(BaseModel):
    """One likely cause; the list order is the rank (most likely first)."""

    model_config = ConfigDict(extra="ignore")

    cause: str = Field(min_length=1)
    confidence: Confidence = "low"
    evidence_ids: list[str] = Field(default_factory=list)
    quotes: list[str] = Field(
        default_factory=list, description="exact strings copied from the cited evidence"
    )
    supported: bool = Field(default=True, description="set by the grounding check, not the model")

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value) / (100 if value > 1 else 1)
            return "high" if number >= 0.7 else "medium" if number >= 0.4 else "low"
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("evidence_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("quotes", mode="before")
    @classmethod
    def _quotes(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else ([] if value is None else value)


class NextStep(BaseModel):
    """One suggested step; ``command`` is only ever suggested, never run by Hotwash."""

    model_config = ConfigDict(extra="ignore")

    step: str = Field(min_length=1)
    command: str | None = None
    cites: list[str] = Field(default_factory=list, description="runbook (R1) or evidence (E2) ids")
    supported: bool = Field(default=True, description="set by the grounding check, not the model")

    @field_validator("cites", mode="before")
    @classmethod
    def _listy(cls, value: Any) -> Any:
        return _as_list(value)


class TriageOutput(BaseModel):
    """A triage suggestion. Stored as ``Draft.content`` together with the keys below.

    ``Draft.content`` shape (schema ``hotwash.triage/v1``, stable; consumers may rely on it)::

        {
          "schema": "hotwash.triage/v1",
          "author": "model" | "evidence-only",
          "summary": str,                       # one paragraph
          "severity": "SEV1".."SEV4", "severity_rationale": str,
          "likely_causes": [                    # ranked, most likely first
            {"cause": str, "confidence": "high"|"medium"|"low",
             "evidence_ids": ["E2", ...],       # only ids that exist (grounding removed others)
             "quotes": [str],                   # verbatim from the cited evidence
             "supported": bool}                 # False: no valid citation left
          ],
          "next_steps": [{"step": str, "command": str | null,   # suggested, never run
                          "cites": ["R1", "E3"], "supported": bool}],
          "open_questions": [str],
          "related_runbooks": ["R1", ...],
          "evidence": [{"id", "kind", "title", "source", "ref", "is_new", "count"}],
          "gaps": [{"source", "error", "query"}]  # what could not be gathered
        }

    Evidence ids: ``E1`` is the alert itself, ``E2..`` log templates and traces, ``R1..``
    runbook sections (``ref`` is ``<runbook id>#<section>``).
    """

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1, description="one paragraph")
    severity: Severity
    severity_rationale: str = ""
    likely_causes: list[Cause] = Field(default_factory=list)
    next_steps: list[NextStep] = Field(default_factory=list)
    open_questions: list[str] = Field(default_factory=list)
    related_runbooks: list[str] = Field(default_factory=list)

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        if isinstance(value, int) and 1 <= value <= 4:
            return f"SEV{value}"
        if isinstance(value, str):
            digits = re.sub(r"\D", "", value)
            if len(digits) == 1 and "1" <= digits <= "4":
                return f"SEV{digits}"
        return value

    @field_validator("open_questions", "related_runbooks", mode="before")
    @classmethod
    def _listy(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else ([] if value is None else value)


class OutputError(ValueError):
    """The model's answer is not a valid :class:`TriageOutput`; the message says why."""


# Caps on list lengths in the schema. A small model under a grammar can loop on one array
# item ("R3", "R3", ...) until max_tokens cuts the JSON off; a cap ends the loop.
_MAX_ITEMS = {"likely_causes": 5, "next_steps": 8, "open_questions": 5, "related_runbooks": 5,
              "evidence_ids": 5, "cites": 4, "quotes": 3}
_ID_FIELDS = ("evidence_ids", "cites", "related_runbooks")


def triage_json_schema(ids: Sequence[str] = ()) -> dict[str, Any]:
    """JSON schema sent to the model: refs inlined, every key required, no extras.

    That is the subset OpenAI strict mode, vLLM guided decoding and llama.cpp's grammar
    converter all accept. The ``supported`` flags belong to the grounding check, so the
    model is not asked for them. With ``ids`` (the evidence ids in the prompt), citation
    fields may only hold those ids: a real 0.5B model otherwise cited runbooks by their
    source name, which grounding then had to drop. Lists are capped (``_MAX_ITEMS``); when
    runbooks are shown, ``related_runbooks`` must name at least one of them (a real 0.5B
    model otherwise often left the list empty).
    """
    raw = TriageOutput.model_json_schema()
    defs = raw.pop("$defs", {})

    def tidy(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return tidy(defs[node["$ref"].rsplit("/", 1)[-1]])
            out = {k: tidy(v) for k, v in node.items()
                   if k not in ("title", "default", "description", "minLength")}
            if out.get("type") == "object" and "properties" in out:
                out["properties"].pop("supported", None)
                out["required"] = list(out["properties"])
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [tidy(v) for v in node]
        return node

    schema: dict[str, Any] = tidy(raw)
    runbook_ids = [i for i in ids if i.startswith("R")]

    def constrain(node: Any) -> None:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if isinstance(prop, dict) and prop.get("type") == "array":
                    if name in _MAX_ITEMS:
                        prop["maxItems"] = _MAX_ITEMS[name]
                    allowed = runbook_ids if name == "related_runbooks" else list(ids)
                    if name in _ID_FIELDS and allowed:
                        prop["items"] = {"type": "string", "enum": allowed}
                    if name == "related_runbooks" and runbook_ids:
                        # Retrieval shows runbooks only when it is confident one applies
                        # (it abstains otherwise): the draft names at least one.
                        prop["minItems"] = 1
                constrain(prop)
            constrain(node.get("items"))

    constrain(schema)
    return schema


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def parse_triage(text: str) -> TriageOutput:
    """Parse a model answer into :class:`TriageOutput`, fixing harmless formatting slips.

    Raises :class:`OutputError` with a short reason the repair prompt can quote.
    """
    candidate = text.strip()
    fenced = _FENCE.search(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
    if not candidate.startswith("{"):
        start, end = candidate.find("{"), candidate.rfind("}")
        if start == -1 or end <= start:
            raise OutputError("the answer contains no JSON object")
        candidate = candidate[start : end + 1]
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError:
        try:
            data = json.loads(_TRAILING_COMMA.sub(r"\1", candidate))
        except json.JSONDecodeError as exc:
            raise OutputError(f"invalid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise OutputError("the answer is JSON but not an object")
    try:
        return TriageOutput.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise OutputError(f"does not match the schema: {problems}") from None


# --- evidence-only drafter -------------------------------------------------------------

_SEVERITY_FROM_LABEL: dict[str, Severity] = {
    "page": "SEV1", "sev1": "SEV1", "p1": "SEV1",
    "critical": "SEV2", "sev2": "SEV2", "p2": "SEV2", "error": "SEV2", "high": "SEV2",
    "warning": "SEV3", "warn": "SEV3", "sev3": "SEV3", "p3": "SEV3", "medium": "SEV3",
    "info": "SEV4", "low": "SEV4", "sev4": "SEV4", "p4": "SEV4", "none": "SEV4",
}
_ERROR_LEVELS = {"ERROR", "FATAL", "CRITICAL", "SEVERE", "PANIC", "EMERG", "ALERT", "WARN",
                 "WARNING"}
_STEP_LINE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?P<text>.+)$")
_CODE_BLOCK = re.compile(r"```[a-zA-Z]*\n(?P<code>.*?)```", re.DOTALL)
_INLINE_CODE = re.compile(r"`(?P<code>[^`\n]{3,})`")


def _log_items(evidence: Evidence) -> list[EvidenceItem]:
    return [i for i in evidence.items if i.kind in (EvidenceKind.LOG_TEMPLATE, EvidenceKind.TRACE)]


def top_templates(evidence: Evidence, *, limit: int = 3) -> list[EvidenceItem]:
    """New error templates first (by score, then count); else error-level ones."""
    logs = _log_items(evidence)
    new = [i for i in logs if i.is_new]
    pool = new or [i for i in logs if (i.level or "").upper() in _ERROR_LEVELS] or logs
    return sorted(pool, key=lambda i: (-i.score, -i.count))[:limit]


def _list_items(prose: str) -> list[str]:
    """Markdown list items, each with its wrapped continuation lines joined on."""
    items: list[str] = []
    current: list[str] | None = None
    for line in prose.splitlines():
        match = _STEP_LINE.match(line)
        if match:
            current = [match.group("text").strip()]
            items.append("")
        elif current is not None and line.startswith((" ", "\t")) and line.strip():
            current.append(line.strip())
        else:
            current = None
            continue
        items[-1] = " ".join(current)
    return items


def _looks_like_command(code: str) -> bool:
    """`kubectl get pods -n shop` is a command; `maximumPoolSize` is a name in prose."""
    first = code.strip().lstrip("$ ").split(" ", 1)[0]
    return " " in code.strip() and first.isascii() and first.replace("-", "").isalnum() \
        and first.islower()


def runbook_steps(item: EvidenceItem, *, limit: int = 4) -> list[NextStep]:
    """List items of a runbook section as steps; a command in it as the suggested command."""
    commands = [m.group("code").strip() for m in _CODE_BLOCK.finditer(item.text)]
    prose = _CODE_BLOCK.sub("", item.text)
    steps: list[NextStep] = []
    for text in _list_items(prose):
        command = next((m.group("code") for m in _INLINE_CODE.finditer(text)
                        if _looks_like_command(m.group("code"))), None)
        steps.append(NextStep(step=text, command=command, cites=[item.id]))
        if len(steps) >= limit:
            break
    if not steps:
        first = next((ln.strip() for ln in prose.splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#")), item.title)
        steps.append(NextStep(step=f"Follow runbook section '{item.title}': {first[:200]}",
                              cites=[item.id]))
    if commands and all(s.command is None for s in steps):
        steps[0] = steps[0].model_copy(update={"command": commands[0].splitlines()[0]})
    return steps


def _first_line(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:limit]


def _pattern(item: EvidenceItem, limit: int) -> str:
    """The template itself: log sources put it in the title, details in the text."""
    return (item.title.strip() or _first_line(item.text))[:limit].strip()


def draft_from_evidence(evidence: Evidence) -> TriageOutput:
    """A triage draft written with no model: alert facts, top new templates, runbook steps.

    Every claim cites the evidence it restates, so it always passes the grounding check.
    """
    alert = evidence.alert
    alert_item = next((i for i in evidence.items if i.kind == EvidenceKind.ALERT), None)
    alert_ids = [alert_item.id] if alert_item else []
    templates = top_templates(evidence)
    runbooks = [i for i in evidence.items if i.kind == EvidenceKind.RUNBOOK]

    service = alert.labels.get("service") or alert.labels.get("job") or "the service"
    headline = f"{EVIDENCE_ONLY_LABEL} Alert {alert.name} is {alert.status} for {service}"
    if alert.summary:
        headline += f": {alert.summary.rstrip()}"
    parts = [headline if headline.endswith((".", "!", "?")) else headline + "."]
    new_count = sum(1 for i in _log_items(evidence) if i.is_new)
    if templates:
        parts.append(f"{new_count} log template(s) are new since the baseline; the top one is "
                     f"\"{_pattern(templates[0], 160)}\".")
    else:
        parts.append("No new log templates were found.")
    if runbooks:
        parts.append(f"Best matching runbook: {runbooks[0].title}.")
    if evidence.gaps:
        parts.append(f"{len(evidence.gaps)} evidence source(s) failed; see open questions.")

    label = (alert.severity or alert.labels.get("severity") or "").strip().lower()
    severity: Severity = _SEVERITY_FROM_LABEL.get(label, "SEV3")
    rationale = (f"Mapped from the alert's severity label '{label}'." if label
                 else "The alert carries no severity label; SEV3 until a human decides.")

    causes = [
        Cause(cause=f"New error pattern since the baseline ({t.count} occurrence(s)): "
                    f"{_pattern(t, 200)}",
              confidence="low", evidence_ids=[t.id], quotes=[_pattern(t, 80)])
        for t in templates
    ]
    steps: list[NextStep] = []
    for rank, rb in enumerate(runbooks[:2]):
        steps.extend(runbook_steps(rb, limit=4 if rank == 0 else 2))
    if templates:
        steps.append(NextStep(step="Find when the top new log template first appeared and "
                                   "what changed just before (deploy, config, traffic).",
                              cites=[templates[0].id, *alert_ids]))
    questions = [f"{gap.source} could not be read ({gap.error}); what does it show?"
                 for gap in evidence.gaps]
    if not runbooks:
        questions.append("No runbook matched this alert; which one applies?")
    questions.append("Did anything change (deploy, config, traffic) just before "
                     f"{alert.starts_at:%Y-%m-%d %H:%M} UTC?")
    return TriageOutput(
        summary=" ".join(parts), severity=severity, severity_rationale=rationale,
        likely_causes=causes, next_steps=steps, open_questions=questions,
        related_runbooks=[rb.id for rb in runbooks[:3]],
    )


# --- content and Markdown --------------------------------------------------------------

def draft_content(output: TriageOutput, evidence: Evidence, *, author: Author) -> dict[str, Any]:
    """``Draft.content``: the output plus the evidence index and gaps (see TriageOutput)."""
    content: dict[str, Any] = {"schema": CONTENT_SCHEMA, "author": author}
    content.update(output.model_dump(mode="json"))
    content["evidence"] = [
        {"id": i.id, "kind": str(i.kind), "title": i.title, "source": i.source, "ref": i.ref,
         "is_new": i.is_new, "count": i.count}
        for i in evidence.items
    ]
    content["gaps"] = [g.model_dump(mode="json") for g in evidence.gaps]
    return content


def _cites(ids: list[str]) -> str:
    return " ".join(f"[{i}]" for i in ids)


def render_markdown(content: dict[str, Any], *, notes: tuple[str, ...] = (),
                    grounding_score: float | None = None) -> str:
    """Markdown of a triage draft for humans (CLI, Slack fallback text, audit)."""
    output = TriageOutput.model_validate(content)
    lines: list[str] = []
    if content.get("author") == "evidence-only":
        lines += [f"> **{EVIDENCE_ONLY_LABEL}**", ""]
    lines += ["### Summary", output.summary, "",
              f"**Severity guess:** {output.severity} — {output.severity_rationale}", ""]
    lines.append("### Likely causes")
    if not output.likely_causes:
        lines.append("_None identified from the evidence._")
    for n, cause in enumerate(output.likely_causes, 1):
        flag = "" if cause.supported else " _(unsupported: no valid evidence cited)_"
        lines.append(f"{n}. {cause.cause} — confidence {cause.confidence} "
                     f"{_cites(cause.evidence_ids)}{flag}")
        for quote in cause.quotes:
            lines.append(f"   > {quote}")
    lines += ["", "### Next steps (suggested — Hotwash never runs commands)"]
    if not output.next_steps:
        lines.append("_No steps suggested._")
    for n, step in enumerate(output.next_steps, 1):
        flag = "" if step.supported else " _(unsupported: no valid citation)_"
        command = f"\n   `{step.command}`" if step.command else ""
        lines.append(f"{n}. {step.step} {_cites(step.cites)}{flag}{command}")
    if output.open_questions:
        lines += ["", "### Open questions", *[f"- {q}" for q in output.open_questions]]
    index = {e["id"]: e for e in content.get("evidence", [])}
    if output.related_runbooks:
        lines += ["", "### Related runbooks"]
        for rid in output.related_runbooks:
            entry = index.get(rid, {})
            lines.append(f"- [{rid}] {entry.get('title', rid)}"
                         + (f" (`{entry['ref']}`)" if entry.get("ref") else ""))
    cited = {i for c in output.likely_causes for i in c.evidence_ids}
    cited |= {i for s in output.next_steps for i in s.cites}
    if cited:
        lines += ["", "### Evidence cited"]
        for eid in sorted(cited, key=lambda i: (i[0], int(re.sub(r"\D", "", i) or 0))):
            entry = index.get(eid)
            if entry:
                new = " (new)" if entry.get("is_new") else ""
                lines.append(f"- [{eid}] {entry['kind']}{new}: {entry['title']} "
                             f"— {entry['source']}")
    gaps = content.get("gaps") or []
    if gaps or notes:
        lines += ["", "### Missing evidence and notes"]
        for gap in gaps:
            query = f" (query: `{gap['query']}`)" if gap.get("query") else ""
            lines.append(f"- {gap['source']} failed: {gap['error']}{query}")
        lines += [f"- {note}" for note in notes]
    if grounding_score is not None:
        lines += ["", f"_Grounding score: {grounding_score:.2f}_"]
    return "\n".join(lines).rstrip() + "\n"
