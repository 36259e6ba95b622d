"""Postmortem drafts from an incident's timeline, stored pending like triage drafts.

Sections: Summary, Impact, Timeline, Detection, Root cause, Contributing factors, What went
well, What went poorly, Action items. Each is drafted from its own template under
``prompts/postmortem/`` (sharing the safety partial), from the incident's timeline
(``T1..``) and the triage a human approved (``D<draft id>``). The grounding check applies
to every section: a point keeps only citations that exist, a point left without one is
dropped (and the draft's notes say so), and every text goes through the one Redactor.

Without a model, or when every model fails for a section, that section is written from
the evidence alone: Timeline, Impact and Detection facts are computed, the approved triage
is quoted, and the judgement sections (root cause, contributing factors, what went well /
poorly, action items) are left as questions for the authors.

The draft is stored pending (``DraftKind.POSTMORTEM``); approve/edit/reject go through
``bot.approval`` as for triage. :func:`approve_postmortem` also records how many lines the
humans changed in each section (event ``postmortem.edits``), which is how these drafts are
measured against human-written postmortems; :func:`export_markdown` exports the approved
version (recording the edit counts first if nothing did yet).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot import metrics, telemetry
from bot.domain import Decision, DecisionAction, Draft, DraftKind, DraftStatus
from bot.grounding import check_citations
from bot.ports import ChatMessage, ChatModel, ChatRequest, ModelError
from bot.prompts import render, template_hash
from bot.redaction import Redactor, build_redactor
from bot.timeline import EntryKind, Timeline, TimelineEntry, build_timeline
from bot.tokens import count_tokens

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from bot.approval import Approvers
    from bot.audit.store import AuditStore
    from bot.ports import SlackPoster
    from bot.services import Services

log = logging.getLogger(__name__)

EVIDENCE_ONLY = "evidence-only"
AUTHORS = "authors"
TEMPLATE_DIR = "postmortem"
SYSTEM_TEMPLATE = f"{TEMPLATE_DIR}/system.md.j2"
TICKET_PLACEHOLDER = "TICKET-?"


@dataclass(frozen=True)
class Section:
    """One postmortem section and what the authors are asked when no model wrote it."""

    key: str
    title: str
    judgement: bool
    questions: str

    @property
    def template(self) -> str:
        return f"{TEMPLATE_DIR}/{self.key}.md.j2"


SECTIONS: tuple[Section, ...] = (
    Section("summary", "Summary", False,
            "In two or three sentences: what broke, for whom, for how long, and why?"),
    Section("impact", "Impact", False,
            "Who was affected and how (users, requests, revenue, data)?"),
    Section("timeline", "Timeline", False, "Add moments that happened outside Slack."),
    Section("detection", "Detection", False,
            "Could we have detected it earlier, and how?"),
    Section("root_cause", "Root cause", True,
            "What was the root cause, and what triggered it? What confirms it?"),
    Section("contributing_factors", "Contributing factors", True,
            "What made this possible, worse or longer (capacity, tests, alerts, process)?"),
    Section("went_well", "What went well", True,
            "What helped us detect, understand or mitigate quickly?"),
    Section("went_poorly", "What went poorly", True,
            "What slowed us down or made things worse?"),
    Section("action_items", "Action items", True,
            "Which follow-ups prevent a recurrence or shorten the next one? Who owns each, "
            "by when?"),
)
SECTION_BY_TITLE = {s.title: s for s in SECTIONS}


# --- model output ------------------------------------------------------------------------


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value


class Point(BaseModel):
    """One statement of a section, with the ids that support it."""

    model_config = ConfigDict(extra="ignore")
    text: str
    cites: list[str] = Field(default_factory=list)

    _cites = field_validator("cites", mode="before")(_as_list)


class ActionItem(BaseModel):
    """A follow-up: owner and due date are suggestions; the ticket is left for humans."""

    model_config = ConfigDict(extra="ignore")
    action: str
    owner: str | None = None
    due: str | None = None
    ticket: str = TICKET_PLACEHOLDER
    cites: list[str] = Field(default_factory=list)

    _cites = field_validator("cites", mode="before")(_as_list)


class SectionOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    points: list[Point] = Field(default_factory=list)


class ActionItemsOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    items: list[ActionItem] = Field(default_factory=list)


def section_schema(section: Section) -> dict[str, Any]:
    """The JSON schema sent as ``response_format`` for one section."""
    cites = {"type": "array", "items": {"type": "string"}}
    if section.key == "action_items":
        item = {"type": "object", "additionalProperties": False,
                "required": ["action", "owner", "due", "cites"],
                "properties": {"action": {"type": "string"},
                               "owner": {"type": ["string", "null"]},
                               "due": {"type": ["string", "null"]}, "cites": cites}}
        return {"type": "object", "additionalProperties": False, "required": ["items"],
                "properties": {"items": {"type": "array", "items": item}}}
    point = {"type": "object", "additionalProperties": False, "required": ["text", "cites"],
             "properties": {"text": {"type": "string"}, "cites": cites}}
    return {"type": "object", "additionalProperties": False, "required": ["points"],
            "properties": {"points": {"type": "array", "items": point}}}


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def parse_section(section: Section, text: str) -> SectionOutput | ActionItemsOutput:
    """The model's answer for ``section``; raises ValueError when it is not usable."""
    cleaned = _FENCE.sub("", text.strip())
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the answer")
    try:
        data = json.loads(cleaned[start:end + 1])
    except ValueError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    try:
        if section.key == "action_items":
            return ActionItemsOutput.model_validate(data)
        return SectionOutput.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"answer does not match the {section.key} schema: "
                         f"{exc.errors()[0]['msg']}") from None


# --- grounding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Grounded:
    """A section's checked points (or items), the share of good citations, what was cut."""

    points: list[dict[str, Any]]
    score: float
    invalid_ids: tuple[str, ...]
    dropped: int
    redacted: int


def ground_section(output: SectionOutput | ActionItemsOutput, *, known_ids: set[str],
                   redactor: Redactor) -> Grounded:
    """Keep only citations that exist; drop claims left without one; redact every text."""
    invalid: list[str] = []
    scores: list[float] = []
    kept: list[dict[str, Any]] = []
    dropped = redacted = 0
    claims: Sequence[Point | ActionItem] = (
        output.items if isinstance(output, ActionItemsOutput) else output.points)
    for claim in claims:
        valid = check_citations(claim.cites, known=known_ids, invalid=invalid)
        scores.append(len(valid) / len(claim.cites) if claim.cites else 0.0)
        if not valid:
            dropped += 1
            continue
        data = claim.model_dump()
        data["cites"] = valid
        for key in ("text", "action", "owner", "due"):
            if isinstance(data.get(key), str):
                data[key], n = redactor.redact(data[key])
                redacted += n
        if isinstance(claim, ActionItem):
            data["ticket"] = TICKET_PLACEHOLDER  # tickets are filed by humans
        kept.append(data)
    score = sum(scores) / len(scores) if scores else 0.0
    return Grounded(kept, round(score, 3), tuple(invalid), dropped, redacted)


# --- facts (computed, never generated) ------------------------------------------------


def _hhmm(at: datetime) -> str:
    return at.strftime("%H:%M:%S")


def _span(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _first(entries: Sequence[TimelineEntry], *kinds: EntryKind) -> TimelineEntry | None:
    return next((e for e in entries if e.kind in kinds), None)


def impact_facts(timeline: Timeline, labels: Mapping[str, set[str]]) -> list[dict[str, Any]]:
    """Impact facts from the timeline: window, duration, alerts, services."""
    entries = timeline.entries
    facts: list[dict[str, Any]] = []
    start = _first(entries, EntryKind.ALERT) or (entries[0] if entries else None)
    end = _first(entries, EntryKind.RESOLUTION)
    if start is not None:
        facts.append({"text": f"First signal at {start.at:%Y-%m-%d %H:%M:%S} UTC: "
                              f"{start.text[:160]}", "cites": [start.id]})
    if start is not None and end is not None and end.at >= start.at:
        facts.append({"text": f"Resolved at {end.at:%H:%M:%S} UTC, "
                              f"{_span((end.at - start.at).total_seconds())} after the first "
                              "signal.", "cites": [start.id, end.id]})
    elif start is not None:
        facts.append({"text": "No resolution is recorded in the timeline yet.",
                      "cites": [start.id]})
    alerts = timeline.of_kind(EntryKind.ALERT)
    if alerts:
        facts.append({"text": f"{len(alerts)} alert notification(s) during the incident.",
                      "cites": [a.id for a in alerts[:5]]})
    for key in ("service", "namespace", "severity"):
        if labels.get(key):
            cite = [alerts[0].id] if alerts else []
            facts.append({"text": f"{key.capitalize()}: {', '.join(sorted(labels[key]))}.",
                          "cites": cite})
    return [f for f in facts if f["cites"]]


def detection_facts(timeline: Timeline) -> list[dict[str, Any]]:
    """Detection facts: first signal, first human, first draft, first approval."""
    entries = timeline.entries
    first = _first(entries, EntryKind.ALERT) or (entries[0] if entries else None)
    if first is None:
        return []
    facts = [{"text": f"Detected at {_hhmm(first.at)} UTC by {first.author} "
                      f"({first.kind.value}).", "cites": [first.id]}]
    later: list[tuple[datetime, dict[str, Any]]] = []
    for kind, what in ((EntryKind.MESSAGE, "First human response"),
                       (EntryKind.DRAFT, "First triage draft"),
                       (EntryKind.DECISION, "First decision on a draft")):
        entry = _first(entries, kind)
        if entry is not None and entry.at >= first.at:
            later.append((entry.at, {
                "text": f"{what} at {_hhmm(entry.at)} UTC, "
                        f"{_span((entry.at - first.at).total_seconds())} after detection.",
                "cites": [entry.id]}))
    return facts + [fact for _, fact in sorted(later, key=lambda pair: pair[0])]


def timeline_points(timeline: Timeline) -> list[dict[str, Any]]:
    return [{"text": f"{_hhmm(e.at)} [{e.kind.value}] {e.author}: "
                     f"{' '.join(e.text.split())[:300]}", "cites": [e.id]}
            for e in timeline.entries]


# --- approved triage -----------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovedTriage:
    """The triage a human approved for the incident: citable as ``D<draft id>``."""

    id: str
    draft: Draft
    decision: Decision
    text: str

    @property
    def approved_by(self) -> str:
        return self.decision.actor


def approved_triage(*, store: AuditStore, incident_id: int) -> ApprovedTriage | None:
    """The most recent approved (or edited and approved) triage of the incident."""
    for draft in store.list_drafts(incident_id=incident_id, status=DraftStatus.APPROVED,
                                   limit=50):
        if draft.kind is not DraftKind.TRIAGE or draft.id is None:
            continue
        decision = store.get_decision(draft_id=draft.id)
        if decision is None or decision.action is DecisionAction.REJECT:
            continue
        text = decision.edited_markdown or draft.markdown
        return ApprovedTriage(id=f"D{draft.id}", draft=draft, decision=decision, text=text)
    return None


def _triage_causes(triage: ApprovedTriage) -> list[dict[str, Any]]:
    if triage.decision.edited_markdown:
        # The human rewrote it: quote their words, not the model's structure.
        return [{"text": f"Approved triage (edited by {triage.approved_by}): "
                         f"{_first_paragraph(triage.text)}", "cites": [triage.id]}]
    causes = triage.draft.content.get("likely_causes") or []
    points = []
    for cause in causes[:3]:
        if isinstance(cause, Mapping) and cause.get("cause"):
            conf = f" (confidence {cause['confidence']})" if cause.get("confidence") else ""
            points.append({"text": f"Approved triage suggested: {cause['cause']}{conf}",
                           "cites": [triage.id]})
    if not points:
        summary = triage.draft.content.get("summary") or _first_paragraph(triage.text)
        points.append({"text": f"Approved triage: {summary}", "cites": [triage.id]})
    return points


def _first_paragraph(markdown: str) -> str:
    for block in markdown.split("\n\n"):
        text = " ".join(line.strip() for line in block.splitlines()
                        if line.strip() and not line.strip().startswith("#"))
        if text:
            return text[:400]
    return markdown.strip()[:400]


# --- prompt budget ------------------------------------------------------------------------


def fit_entries(entries: Sequence[TimelineEntry], *, budget_tokens: int,
                reserved_tokens: int = 0) -> tuple[list[TimelineEntry], int]:
    """Entries that fit the prompt budget, in time order, and how many messages were left
    out. Alerts, drafts, decisions and resolutions always stay; human messages fill the
    rest, earliest and latest first (how it started and how it ended)."""
    cost = {e.id: count_tokens(e.line()) + 12 for e in entries}
    keep = [e for e in entries if e.kind is not EntryKind.MESSAGE]
    used = reserved_tokens + sum(cost[e.id] for e in keep)
    messages = [e for e in entries if e.kind is EntryKind.MESSAGE]
    order: list[TimelineEntry] = []
    lo, hi = 0, len(messages) - 1
    while lo <= hi:
        order.append(messages[lo])
        if hi != lo:
            order.append(messages[hi])
        lo, hi = lo + 1, hi - 1
    chosen: set[str] = set()
    for e in order:
        if used + cost[e.id] > budget_tokens:
            continue
        used += cost[e.id]
        chosen.add(e.id)
    kept_ids = {e.id for e in keep} | chosen
    return [e for e in entries if e.id in kept_ids], len(messages) - len(chosen)


# --- drafting ------------------------------------------------------------------------------


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0


def _prompt_context(*, title: str, facts: Sequence[str], timeline: Timeline,
                    triage: ApprovedTriage | None, redactor: Redactor,
                    budget_tokens: int) -> tuple[dict[str, Any], int]:
    """Template variables, with every Slack/alert text redacted before it leaves."""
    redactions = 0

    def clean(text: str) -> str:
        nonlocal redactions
        out, n = redactor.redact(text)
        redactions += n
        return out

    triage_tokens = count_tokens(triage.text) if triage else 0
    entries, left_out = fit_entries(timeline.entries, budget_tokens=budget_tokens,
                                    reserved_tokens=triage_tokens + 400)
    ctx = {
        "incident_title": clean(title),
        "facts": [clean(f) for f in facts],
        "triage": ({"id": triage.id, "approved_by": triage.approved_by,
                    "text": clean(triage.text)} if triage else None),
        "entries": [{"id": e.id, "kind": e.kind.value, "at": f"{e.at:%Y-%m-%d %H:%M:%S}Z",
                     "author": e.author, "text": clean(e.text)} for e in entries],
        "left_out": left_out,
    }
    return ctx, redactions


def _ask(*, section: Section, models: Sequence[ChatModel], system: str, user: str,
         max_tokens: int, temperature: float, seed: int | None, usage: _Usage,
         prices: Mapping[str, tuple[float, float]],
         notes: list[str]) -> tuple[SectionOutput | ActionItemsOutput, str] | None:
    request = ChatRequest(
        messages=(ChatMessage(role="system", content=system),
                  ChatMessage(role="user", content=user)),
        json_schema=section_schema(section), schema_name=f"postmortem_{section.key}",
        max_tokens=max_tokens, temperature=temperature, seed=seed)
    # The model-call log line names the exact prompt sent (never its text).
    prompt_hash = hashlib.sha256(f"{system}\n{user}".encode()).hexdigest()
    for position, model in enumerate(models):
        nxt = models[position + 1].name if position + 1 < len(models) else EVIDENCE_ONLY
        started = time.perf_counter()
        try:
            response = model.complete(request)
        except ModelError as exc:
            metrics.record_model_call(model=model.name, seconds=time.perf_counter() - started,
                                      error="error")
            telemetry.log_model_call(model=model.name, model_version=None,
                                     prompt_hash=prompt_hash, prompt_template=request.schema_name,
                                     latency_ms=(time.perf_counter() - started) * 1000,
                                     error="error")
            metrics.record_fallback(from_model=model.name, to_model=nxt, reason="error")
            notes.append(f"{section.title}: model {model.name} failed ({exc}).")
            continue
        telemetry.log_model_call(model=model.name, model_version=response.model,
                                 prompt_hash=prompt_hash, prompt_template=request.schema_name,
                                 prompt_tokens=response.prompt_tokens,
                                 completion_tokens=response.completion_tokens,
                                 latency_ms=response.latency_ms)
        usage.prompt_tokens += response.prompt_tokens
        usage.completion_tokens += response.completion_tokens
        usage.latency_ms += response.latency_ms
        price_in, price_out = prices.get(response.model, prices.get(model.name, (0.0, 0.0)))
        cost = (response.prompt_tokens * price_in
                + response.completion_tokens * price_out) / 1_000_000
        usage.cost_usd += cost
        try:
            parsed = parse_section(section, response.text)
        except ValueError as exc:
            metrics.record_model_call(model=model.name, seconds=response.latency_ms / 1000,
                                      prompt_tokens=response.prompt_tokens,
                                      completion_tokens=response.completion_tokens,
                                      cost_usd=cost, error="invalid_output")
            metrics.record_fallback(from_model=model.name, to_model=nxt,
                                    reason="invalid_output")
            notes.append(f"{section.title}: the answer of {model.name} was unusable ({exc}).")
            continue
        metrics.record_model_call(model=model.name, seconds=response.latency_ms / 1000,
                                  prompt_tokens=response.prompt_tokens,
                                  completion_tokens=response.completion_tokens, cost_usd=cost)
        return parsed, response.model or model.name
    return None


def _labels(store: AuditStore | None, incident_id: int | None) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"service": set(), "namespace": set(), "severity": set()}
    if store is None or incident_id is None:
        return out
    for alert in store.alerts_for(incident_id=incident_id):
        for key in ("service", "namespace"):
            if alert.labels.get(key):
                out[key].add(alert.labels[key])
        if alert.severity:
            out["severity"].add(alert.severity)
    return out


def compose_postmortem(*, title: str, timeline: Timeline, triage: ApprovedTriage | None,
                       labels: Mapping[str, set[str]], models: Sequence[ChatModel],
                       redactor: Redactor, budget_tokens: int = 6000, max_tokens: int = 1200,
                       temperature: float = 0.1, seed: int | None = None,
                       prices: Mapping[str, tuple[float, float]] | None = None,
                       incident_id: int | None = None) -> Draft:
    """Draft every section (model first, evidence-only fallback), unsaved."""
    started = time.perf_counter()
    usage = _Usage()
    notes: list[str] = list(timeline.gaps)
    known = {e.id for e in timeline.entries} | ({triage.id} if triage else set())
    computed = {
        "impact": impact_facts(timeline, labels),
        "detection": detection_facts(timeline),
        "timeline": timeline_points(timeline),
    }
    fact_lines = [f["text"] for f in computed["impact"]]
    system = render(SYSTEM_TEMPLATE) if models else None
    ctx, redactions = _prompt_context(title=title, facts=fact_lines, timeline=timeline,
                                      triage=triage, redactor=redactor,
                                      budget_tokens=budget_tokens) if models else ({}, 0)
    if ctx.get("left_out"):
        notes.append(f"{ctx['left_out']} human message(s) did not fit the prompt budget and "
                     "were not shown to the model (they are in the Timeline section).")
    sections: dict[str, dict[str, Any]] = {}
    scores: list[float] = []
    writers: set[str] = set()
    for section in SECTIONS:
        entry: dict[str, Any] = {"title": section.title, "template": section.template,
                                 "hash": template_hash(section.template),
                                 "facts": computed.get(section.key, [])}
        answer = None
        if models and system is not None:
            prompt = render(section.template, items=section.key == "action_items", **ctx)
            answer = _ask(section=section, models=models, system=system.text,
                          user=prompt.text, max_tokens=max_tokens, temperature=temperature,
                          seed=seed, usage=usage, prices=prices or {}, notes=notes)
        if answer is not None:
            output, model_name = answer
            checked = ground_section(output, known_ids=known, redactor=redactor)
            scores.append(checked.score)
            redactions += checked.redacted
            if checked.invalid_ids:
                metrics.record_grounding_failure(reason="unknown_ref")
                notes.append(f"{section.title}: removed citations to entries that do not "
                             f"exist: {', '.join(sorted(set(checked.invalid_ids)))}.")
            if checked.dropped:
                metrics.record_grounding_failure(reason="uncited_claim")
                notes.append(f"{section.title}: dropped {checked.dropped} claim(s) with no "
                             "valid source.")
            key = "items" if section.key == "action_items" else "points"
            entry.update({"author": model_name, key: checked.points})
            if checked.points:
                writers.add(model_name)
            else:
                entry["author"] = AUTHORS
                entry["prompt"] = section.questions
        else:
            entry.update(_evidence_only(section, computed=computed, triage=triage))
        if section.key == "timeline" and entry.get("author") != EVIDENCE_ONLY:
            entry["facts"] = []  # the model's key moments replace the full list
        sections[section.key] = entry
    if redactions:
        metrics.record_redactions(where="prompt", count=redactions)
        notes.append(f"Redacted {redactions} secret-like string(s) before drafting.")
    summary_points = sections["summary"].get("points") or sections["impact"]["facts"]
    content: dict[str, Any] = {
        "title": title,
        "incident_id": incident_id,
        "summary": " ".join(p["text"] for p in summary_points[:3]),
        "sections": sections,
        "timeline": [{"id": e.id, "at": e.at.isoformat(), "kind": e.kind.value,
                      "author": e.author, "text": e.text, "source": e.source}
                     for e in timeline.entries],
        "approved_triage": ({"id": triage.id, "draft_id": triage.draft.id,
                             "approved_by": triage.approved_by} if triage else None),
        "slack": {"channel": timeline.channel, "thread_ts": timeline.thread_ts,
                  "noise_filtered": timeline.noise, "pages_read": timeline.slack_calls},
    }
    hashes = "".join(sections[s.key]["hash"] for s in SECTIONS)
    model = " + ".join(sorted(writers)) if writers else EVIDENCE_ONLY
    refs = sorted({c for s in sections.values()
                   for p in [*s.get("facts", []), *s.get("points", []), *s.get("items", [])]
                   for c in p["cites"]}, key=_id_order)
    return Draft(
        kind=DraftKind.POSTMORTEM, incident_id=incident_id, content=content,
        markdown=render_markdown(content, notes=tuple(notes)), model=model,
        prompt_template=f"{TEMPLATE_DIR}/*.md.j2",
        prompt_hash=hashlib.sha256(hashes.encode()).hexdigest(),
        params={"temperature": temperature, "max_tokens": max_tokens, "seed": seed,
                "budget_tokens": budget_tokens},
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        cost_usd=round(usage.cost_usd, 6),
        latency_ms=round(usage.latency_ms or (time.perf_counter() - started) * 1000, 1),
        evidence_refs=tuple(refs),
        grounding_score=round(sum(scores) / len(scores), 3) if scores else None,
        notes=tuple(notes), channel=timeline.channel,
    )


def _id_order(ref: str) -> tuple[str, int]:
    digits = ref[1:]
    return ref[:1], int(digits) if digits.isdigit() else 0


def _evidence_only(section: Section, *, computed: Mapping[str, list[dict[str, Any]]],
                   triage: ApprovedTriage | None) -> dict[str, Any]:
    out: dict[str, Any] = {"author": EVIDENCE_ONLY}
    if section.key == "summary" and triage is not None:
        out["points"] = _triage_causes(triage)[:1]
    elif section.key == "root_cause" and triage is not None:
        out["points"] = _triage_causes(triage)
    elif section.key == "action_items":
        out["items"] = []
    else:
        out["points"] = []
    if section.key != "timeline":
        out["prompt"] = section.questions
        if not out.get("points") and not computed.get(section.key):
            out["author"] = AUTHORS
    return out


# --- rendering -----------------------------------------------------------------------------


def _cites(ids: Sequence[str]) -> str:
    return f" [{', '.join(ids)}]" if ids else ""


def render_markdown(content: Mapping[str, Any], *, notes: Sequence[str] = ()) -> str:
    """The postmortem as Markdown, one ``## `` heading per section (edits are counted per
    heading, so keep them)."""
    lines = [f"# Postmortem: {content['title']}", ""]
    triage = content.get("approved_triage")
    meta = "Draft written by Hotwash from the incident timeline (T..)"
    if triage:
        meta += f" and the triage approved by {triage['approved_by']} ({triage['id']})"
    lines += [f"_{meta}. Every point cites its source; approvers edit before it is final._",
              ""]
    for section in SECTIONS:
        data = content["sections"][section.key]
        lines += [f"## {section.title}", ""]
        body: list[str] = []
        for fact in data.get("facts", []):
            body.append(f"- {fact['text']}{_cites(fact['cites'])}")
        for point in data.get("points", []):
            body.append(f"- {point['text']}{_cites(point['cites'])}")
        if section.key == "action_items":
            items = data.get("items", [])
            body += ["| Action | Owner | Due | Ticket | Sources |", "|---|---|---|---|---|"]
            for item in items:
                ticket = item.get("ticket") or TICKET_PLACEHOLDER
                body.append(f"| {item['action']} | {item.get('owner') or 'TBD'} | "
                            f"{item.get('due') or 'TBD'} | {ticket} | "
                            f"{', '.join(item['cites'])} |")
            if not items:
                body.append(f"| _(to be written)_ | TBD | TBD | {TICKET_PLACEHOLDER} | |")
        if data.get("prompt"):
            body += ["", f"> _For the authors:_ {data['prompt']}"]
        lines += body + [""]
    if notes:
        lines += ["---", "", "_Notes for the approver:_", ""]
        lines += [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


# --- entry points ----------------------------------------------------------------------------


def draft_postmortem(*, incident_id: int | None, services: Services,
                     slack: WebClient | None = None, channel: str | None = None,
                     thread_ts: str | None = None) -> Draft:
    """Build the incident's postmortem draft and store it pending; returns it with its id.

    Never raises for a failing model or Slack: sections fall back to evidence, Slack
    failures become notes."""
    store = services.store
    timeline = build_timeline(store=store if incident_id is not None else None,
                              incident_id=incident_id, slack=slack, channel=channel,
                              thread_ts=thread_ts)
    triage = approved_triage(store=store, incident_id=incident_id) \
        if incident_id is not None else None
    title = (store.get_incident(incident_id=incident_id).title if incident_id is not None
             else _title_from(timeline))
    settings = services.settings
    draft = compose_postmortem(
        title=title, timeline=timeline, triage=triage,
        labels=_labels(store, incident_id), models=services.models,
        redactor=build_redactor(services.settings), budget_tokens=settings.llm_context_tokens,
        max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature,
        seed=settings.llm_seed, prices=settings.llm_prices, incident_id=incident_id)
    saved = store.save_draft(draft=draft)
    metrics.record_draft(kind=DraftKind.POSTMORTEM, status=DraftStatus.PENDING)
    return saved


def _title_from(timeline: Timeline) -> str:
    first = _first(timeline.entries, EntryKind.ALERT) or (
        timeline.entries[0] if timeline.entries else None)
    if first is None:
        return f"incident in {timeline.channel or 'Slack'}"
    return " ".join(first.text.split())[:80]


def find_incident(*, store: AuditStore, channel: str,
                  thread_ts: str | None = None) -> int | None:
    """The incident discussed in this thread, or the latest one of this channel."""
    from bot.audit.models import IncidentRow

    with store.read() as session:
        query = select(IncidentRow.id).where(IncidentRow.channel == channel)
        if thread_ts is not None:
            query = query.where(IncidentRow.thread_ts == thread_ts)
        return session.scalar(query.order_by(IncidentRow.id.desc()).limit(1))


def postmortem_for_thread(*, channel: str, thread_ts: str | None, services: Services,
                          slack: WebClient | None) -> Draft:
    """`/hotwash postmortem` in a thread (or an incident channel when ``thread_ts`` is
    None): the incident Hotwash knows for it, else the conversation alone."""
    # A thread Hotwash never saw is drafted from the conversation alone.
    incident_id = find_incident(store=services.store, channel=channel, thread_ts=thread_ts)
    return draft_postmortem(incident_id=incident_id, services=services, slack=slack,
                            channel=channel, thread_ts=thread_ts)


def postmortem(*, room: Any, command: Mapping[str, Any], respond: Callable[..., Any]) -> Draft:
    """The Slack room's `/hotwash postmortem [incident id]` handler (see bot.slack.app).

    Slash commands carry no thread, so: an explicit incident id wins; else the latest
    incident Hotwash posted in this channel; else the channel itself is the incident
    channel. The draft is posted in the incident's thread with the approval buttons."""
    from bot.slack import blocks

    services = room.services
    channel = str(command.get("channel_id") or "")
    arg = str(command.get("text") or "").split(maxsplit=1)
    wanted = arg[1].strip().lstrip("#") if len(arg) > 1 else ""
    incident_id: int | None = int(wanted) if wanted.isdigit() else None
    thread_ts: str | None = None
    if incident_id is None:
        incident_id = find_incident(store=services.store, channel=channel)
    if incident_id is not None:
        incident = services.store.get_incident(incident_id=incident_id)
        channel, thread_ts = incident.channel or channel, incident.thread_ts
    respond(text=":hourglass_flowing_sand: Drafting the postmortem from the timeline…",
            response_type="ephemeral")
    draft = draft_postmortem(incident_id=incident_id, services=services, slack=room.client,
                             channel=channel, thread_ts=thread_ts)
    text, body = blocks.draft_message(draft, url_base=room.url_base)
    try:
        ts = room.poster.post(channel=channel, text=text, blocks=body, thread_ts=thread_ts)
    except SlackApiError as exc:
        # The draft is stored either way; say where to find it rather than fail silently.
        log.warning("posting postmortem draft %s failed: %s", draft.id, exc)
        respond(text=f":warning: Postmortem draft #{draft.id} is stored but could not be "
                     f"posted here ({exc.response.get('error')}). See `hotwash drafts show "
                     f"{draft.id}`.", response_type="ephemeral")
        return draft
    if draft.id is not None:
        services.store.set_draft_message(draft_id=draft.id, channel=channel, message_ts=ts)
    return draft


# --- approval, edits, export -------------------------------------------------------------------


def split_sections(markdown: str) -> dict[str, str]:
    """``## Heading`` -> body text (the part before the first heading is ``""``)."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out.setdefault(current, [])
            continue
        out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def section_edits(original: str, edited: str) -> dict[str, int]:
    """Lines added or removed by humans, per section title (0 = kept as drafted).

    A section the humans deleted counts all its lines; one they added counts all of its."""
    before, after = split_sections(original), split_sections(edited)
    counts: dict[str, int] = {}
    for title in [s.title for s in SECTIONS] + [t for t in after if t and
                                                t not in SECTION_BY_TITLE]:
        a = [x for x in before.get(title, "").splitlines() if x.strip()]
        b = [x for x in after.get(title, "").splitlines() if x.strip()]
        diff = difflib.ndiff(a, b)
        counts[title] = sum(1 for d in diff if d[:2] in ("+ ", "- "))
    return counts


def record_edits(*, store: AuditStore, draft_id: int) -> dict[str, int] | None:
    """Audit the per-section edit counts of an approved postmortem (once); returns them."""
    for event in store.events(subject=f"draft:{draft_id}"):
        if event.type == "postmortem.edits":
            return dict(event.payload["sections"])
    draft = store.get_draft(draft_id=draft_id)
    decision = store.get_decision(draft_id=draft_id)
    if draft.kind is not DraftKind.POSTMORTEM or decision is None or \
            decision.action is DecisionAction.REJECT:
        return None
    edits = section_edits(draft.markdown, decision.edited_markdown or draft.markdown)
    store.record_event(type="postmortem.edits", subject=f"draft:{draft_id}",
                       payload={"draft_id": draft_id, "actor": decision.actor,
                                "sections": edits,
                                "sections_changed": sum(1 for n in edits.values() if n),
                                "lines_changed": sum(edits.values())})
    return edits


def approve_postmortem(*, store: AuditStore, draft_id: int, actor: str, approvers: Approvers,
                       edited_markdown: str | None = None, via: str = "slack") -> Decision:
    """``bot.approval.approve`` plus the per-section edit counts in the audit log."""
    from bot.approval import approve

    decision = approve(store=store, draft_id=draft_id, actor=actor, approvers=approvers,
                       edited_markdown=edited_markdown, via=via)
    record_edits(store=store, draft_id=draft_id)
    return decision


@dataclass(frozen=True)
class EditStats:
    """How much humans changed one section across approved postmortems."""

    section: str
    drafts: int
    edited: int  # drafts in which this section changed at all
    mean_lines: float  # mean lines added + removed per draft


def edit_stats(*, store: AuditStore) -> list[EditStats]:
    """Per-section edit statistics from the ``postmortem.edits`` audit events: which
    sections the drafts get right and which the humans rewrite."""
    per: dict[str, list[int]] = {s.title: [] for s in SECTIONS}
    for event in store.events():
        if event.type != "postmortem.edits":
            continue
        for title, lines in event.payload["sections"].items():
            per.setdefault(title, []).append(int(lines))
    return [EditStats(title, len(v), sum(1 for n in v if n),
                      round(sum(v) / len(v), 2) if v else 0.0) for title, v in per.items()]


class NotApproved(Exception):
    """Only an approved postmortem can be exported."""


def export_markdown(*, store: AuditStore, draft_id: int) -> str:
    """The approved postmortem as Markdown (the humans' edited text when they edited it)."""
    draft = store.get_draft(draft_id=draft_id)
    if draft.kind is not DraftKind.POSTMORTEM:
        raise NotApproved(f"draft {draft_id} is a {draft.kind.value} draft, not a postmortem")
    decision = store.get_decision(draft_id=draft_id)
    if draft.status is not DraftStatus.APPROVED or decision is None:
        raise NotApproved(f"draft {draft_id} is {draft.status.value}; approve it first")
    record_edits(store=store, draft_id=draft_id)
    body = decision.edited_markdown or draft.markdown
    verb = "Edited and approved" if decision.edited_markdown else "Approved"
    footer = (f"\n---\n\n_{verb} by {decision.actor} on {decision.at:%Y-%m-%d %H:%M} UTC · "
              f"Hotwash draft #{draft_id} · {draft.model}_\n")
    return body.rstrip() + "\n" + footer


def export_blocks(markdown: str) -> list[dict[str, Any]]:
    """The exported postmortem as Block Kit: a header, then one section block per
    ``## `` section (Slack caps a text block at 3000 characters; longer ones are clipped
    with a pointer to the full Markdown export)."""
    from bot.slack.blocks import mrkdwn

    main, _, tail = markdown.partition("\n---\n")  # notes and the approval footer
    title = next((line[2:].strip() for line in main.splitlines()
                  if line.startswith("# ")), "Postmortem")
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    for heading, body in split_sections(main).items():
        if not heading:
            continue
        text = f"*{heading}*\n{mrkdwn(body)}" if body else f"*{heading}*"
        if len(text) > 3000:
            text = text[:2900].rstrip() + "\n… _(clipped; see `hotwash postmortem export`)_"
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if tail.strip():
        out.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": mrkdwn(tail.replace("\n---\n", "\n").strip())[:3000]}]})
    return out[:50]  # Slack's block limit per message


def post_export(*, store: AuditStore, poster: SlackPoster, draft_id: int) -> str:
    """Post the approved postmortem in the thread where its draft was posted (or the
    incident's thread); audited as ``postmortem.posted``. Returns the message ts."""
    markdown = export_markdown(store=store, draft_id=draft_id)
    draft = store.get_draft(draft_id=draft_id)
    channel, thread_ts = draft.channel, draft.message_ts
    if draft.incident_id is not None:
        incident = store.get_incident(incident_id=draft.incident_id)
        channel = channel or incident.channel
        thread_ts = incident.thread_ts or thread_ts
    if not channel:
        raise NotApproved(f"draft {draft_id} has no Slack channel to post to")
    title = next((line[2:].strip() for line in markdown.splitlines()
                  if line.startswith("# ")), "Postmortem")
    ts = poster.post(channel=channel, text=f"Approved postmortem: {title}",
                     blocks=export_blocks(markdown), thread_ts=thread_ts)
    store.record_event(type="postmortem.posted", subject=f"draft:{draft_id}",
                       payload={"draft_id": draft_id, "channel": channel, "ts": ts,
                                "markdown_sha256": hashlib.sha256(
                                    markdown.encode()).hexdigest()})
    return ts
