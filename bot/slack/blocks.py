"""Pure Block Kit builders: domain objects in, Slack blocks (plain dicts) out.

No I/O and no clients here, so every message Hotwash posts can be checked in a unit test.
Draft content comes from the triage room's structured output; the readers below accept
the field names it uses and degrade to the rendered markdown when a field is missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.domain import Alert, Decision, DecisionAction, Draft, DraftStatus, Incident, RunbookMatch

# action_id / callback_id values: listeners.py matches on these.
APPROVE = "hotwash_approve"
EDIT = "hotwash_edit"
REJECT = "hotwash_reject"
REGENERATE = "hotwash_regenerate"
EDIT_MODAL = "hotwash_edit_modal"
REJECT_MODAL = "hotwash_reject_modal"
EDIT_BLOCK = "draft_text"
EDIT_INPUT = "markdown"
REASON_BLOCK = "reject_reason"
REASON_INPUT = "reason"

_SECTION_MAX = 2900  # Slack rejects section text over 3000 characters
_INPUT_MAX = 3000  # plain_text_input max_length
_MAX_ITEMS = 6


@dataclass(frozen=True)
class DraftRef:
    """Where a draft message lives, carried in modal private_metadata."""

    draft_id: int
    channel: str | None = None
    ts: str | None = None

    def dumps(self) -> str:
        return json.dumps({"draft_id": self.draft_id, "channel": self.channel, "ts": self.ts})

    @classmethod
    def loads(cls, text: str) -> DraftRef:
        data = json.loads(text)
        return cls(draft_id=int(data["draft_id"]), channel=data.get("channel"),
                   ts=data.get("ts"))


def _clip(text: str, limit: int = _SECTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=_clip(text))


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=_md(text))


def _to_dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    return [block.to_dict() for block in blocks]


def mrkdwn(markdown: str) -> str:
    """Markdown (as the model writes it) to Slack mrkdwn: bold, headings, links."""
    text = re.sub(r"^#{1,6}\s*(.+)$", r"*\1*", markdown, flags=re.M)
    text = re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)
    text = re.sub(r"__(.+?)__", r"*\1*", text)
    text = re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r"<\2|\1>", text)
    return text


def runbook_link(runbook: str, section: str | None, *, url_base: str | None) -> str:
    """A clickable runbook reference when a URL base is configured, else `id § section`."""
    label = f"{runbook} § {section}" if section else runbook
    if not url_base:
        return f"`{label}`"
    anchor = ""
    if section:
        last = section.split(">")[-1].strip().lower()
        anchor = "#" + re.sub(r"[^a-z0-9 -]", "", last).strip().replace(" ", "-")
    return f"<{url_base.rstrip('/')}/{runbook}.md{anchor}|{label}>"


# --- reading the draft's structured content ---------------------------------------------


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) not in (None, "", [], {}):
            return data[key]
    return None


def _text_of(item: Any, *keys: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        value = _first(item, *keys)
        return str(value) if value is not None else ""
    return str(item)


def _ids(item: Any, *keys: str) -> list[str]:
    if not isinstance(item, Mapping):
        return []
    value = _first(item, *keys)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def draft_summary(draft: Draft) -> str:
    summary = _first(draft.content, "summary")
    if summary:
        return str(summary)
    for paragraph in draft.markdown.split("\n\n"):
        if paragraph.strip() and not paragraph.lstrip().startswith("#"):
            return paragraph.strip()
    return draft.markdown.strip()


def draft_severity(draft: Draft) -> tuple[str | None, str]:
    value = _first(draft.content, "severity", "severity_guess")
    rationale = str(_first(draft.content, "severity_rationale") or "")
    if isinstance(value, Mapping):
        rationale = _text_of(value, "rationale", "reason") or rationale
        value = _first(value, "level", "guess", "value", "severity")
    return (str(value) if value else None), rationale


def _evidence_index(draft: Draft) -> dict[str, Mapping[str, Any]]:
    """Evidence ids (E1.., R1..) -> the evidence entries stored in the draft content."""
    out: dict[str, Mapping[str, Any]] = {}
    for item in draft.content.get("evidence") or []:
        if isinstance(item, Mapping) and item.get("id"):
            out[str(item["id"])] = item
    return out


def cite(ref_id: str, index: Mapping[str, Mapping[str, Any]], *, url_base: str | None) -> str:
    """An evidence id as shown in Slack; runbook ids (R1) become runbook links."""
    item = index.get(ref_id)
    ref = item.get("ref") if item is not None else None
    if isinstance(ref, str) and ref and str(item.get("kind", "")) == "runbook":  # type: ignore[union-attr]
        runbook, _, section = ref.partition("#")
        return f"`{ref_id}` " + runbook_link(runbook, section or None, url_base=url_base)
    return f"`{ref_id}`"


def _causes(draft: Draft) -> list[str]:
    lines = []
    for item in (_first(draft.content, "likely_causes", "causes") or [])[:_MAX_ITEMS]:
        text = _text_of(item, "cause", "text", "title", "summary", "description")
        ids = _ids(item, "evidence_ids", "evidence", "citations", "refs")
        extra = []
        if isinstance(item, Mapping):
            confidence = item.get("confidence")
            if isinstance(confidence, int | float):
                extra.append(f"confidence {confidence:.0%}" if confidence <= 1
                             else f"confidence {confidence}")
            elif isinstance(confidence, str) and confidence:
                extra.append(f"{confidence} confidence")
            if item.get("supported") is False:
                extra.append(":warning: not supported by the evidence")
        cites = " ".join(f"`{i}`" for i in ids) if ids else "_no citation_"
        suffix = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"• {text} — {cites}{suffix}")
    return lines


def _next_steps(draft: Draft, *, url_base: str | None) -> list[str]:
    index = _evidence_index(draft)
    lines = []
    for number, item in enumerate((_first(draft.content, "next_steps", "steps") or [])
                                  [:_MAX_ITEMS], start=1):
        text = _text_of(item, "step", "action", "text", "description")
        refs = [cite(i, index, url_base=url_base)
                for i in _ids(item, "cites", "evidence_ids", "citations")]
        line = f"{number}. {text}"
        if isinstance(item, Mapping) and item.get("command"):
            line += f"\n     `{item['command']}` _(suggested, not run)_"
        if refs:
            line += f" — {' '.join(refs)}"
        if isinstance(item, Mapping) and item.get("supported") is False:
            line += " :warning: _uncited_"
        lines.append(line)
    return lines


def _related_runbooks(draft: Draft, *, url_base: str | None) -> list[str]:
    index = _evidence_index(draft)
    out = []
    for item in (_first(draft.content, "related_runbooks") or [])[:_MAX_ITEMS]:
        if isinstance(item, Mapping):
            out.append(runbook_link(str(_first(item, "id", "runbook", "path") or "?"),
                                    _first(item, "section"), url_base=url_base))
        elif str(item) in index:
            out.append(cite(str(item), index, url_base=url_base))
        else:
            out.append(runbook_link(str(item), None, url_base=url_base))
    return out


def _cited_evidence(draft: Draft) -> list[str]:
    """One line per evidence id the causes and steps cite, so approvers can judge them."""
    index = _evidence_index(draft)
    order: list[str] = []
    for key, id_keys in (("likely_causes", ("evidence_ids",)), ("next_steps", ("cites",))):
        for item in draft.content.get(key) or []:
            for ref_id in _ids(item, *id_keys):
                if ref_id in index and ref_id not in order:
                    order.append(ref_id)
    lines = []
    for ref_id in order[:8]:
        item = index[ref_id]
        facts = [str(item.get("source") or "")]
        if item.get("is_new"):
            facts.append("new")
        if isinstance(item.get("count"), int) and item["count"] > 1:
            facts.append(f"{item['count']}×")
        detail = ", ".join(f for f in facts if f)
        lines.append(f"`{ref_id}` {_clip(str(item.get('title') or ''), 140)}"
                     + (f" ({detail})" if detail else ""))
    return lines


def _gaps(draft: Draft) -> list[str]:
    gaps: list[str] = list(draft.notes)
    for gap in draft.content.get("gaps") or draft.content.get("evidence_gaps") or []:
        if isinstance(gap, Mapping):
            source = gap.get("source", "?")
            error = gap.get("error", "")
            gaps.append(f"{source}: {error}")
        elif isinstance(gap, str):
            gaps.append(gap)
    seen: set[str] = set()
    return [g for g in gaps if not (g in seen or seen.add(g))]  # type: ignore[func-returns-value]


def context_line(draft: Draft) -> str:
    """Model, tokens, latency and grounding in one small line."""
    parts = [f"model `{draft.model}`",
             f"{draft.prompt_tokens}+{draft.completion_tokens} tokens"]
    if draft.cost_usd:
        parts.append(f"${draft.cost_usd:.4f}")
    if draft.latency_ms:
        parts.append(f"{draft.latency_ms / 1000:.1f} s")
    if draft.grounding_score is not None:
        parts.append(f"grounding {draft.grounding_score:.0%}")
    if draft.id is not None:
        parts.append(f"draft #{draft.id}")
    if draft.prompt_template:
        parts.append(f"prompt `{draft.prompt_template}`")
    return " · ".join(parts)


# --- messages ---------------------------------------------------------------------------


def working(alert: Alert) -> tuple[str, list[dict[str, Any]]]:
    """The short first reply in an alert's thread, replaced by the draft when it is ready."""
    text = f":mag: Hotwash is triaging *{alert.name}*: gathering logs, traces and runbooks…"
    return text, _to_dicts([_section(text)])


def alert_root(alert: Alert, incident: Incident) -> tuple[str, list[dict[str, Any]]]:
    """The channel message for an alert that arrived by webhook (its thread holds the draft)."""
    icon = ":rotating_light:" if alert.status == "firing" else ":white_check_mark:"
    title = f"{icon} [{alert.status.upper()}] {alert.name}"
    lines = [f"*{title}*"]
    if alert.summary:
        lines.append(alert.summary)
    labels = " ".join(f"`{k}={v}`" for k, v in sorted(alert.labels.items()) if k != "alertname")
    if labels:
        lines.append(labels)
    blocks: list[Block] = [_section("\n".join(lines)),
                           ContextBlock(elements=[_md(
                               f"incident #{incident.id} · source {alert.source.value}")])]
    return title, _to_dicts(blocks)


def draft_message(draft: Draft, *, url_base: str | None = None,
                  decision: Decision | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The draft in Block Kit: banner, summary, severity, causes, next steps, gaps, context
    line and (while pending) the Approve / Edit / Reject / Regenerate buttons."""
    status = draft.status
    if decision is not None:
        status = (DraftStatus.REJECTED if decision.action is DecisionAction.REJECT
                  else DraftStatus.APPROVED)
    kind = draft.kind.value.capitalize()
    banner = {
        DraftStatus.PENDING: f"{kind} draft — pending approval",
        DraftStatus.APPROVED: f"{kind} — approved",
        DraftStatus.REJECTED: f"{kind} draft — rejected",
        DraftStatus.SUPERSEDED: f"{kind} draft — superseded",
    }[status]
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=_clip(banner, 150)))]
    if decision is not None:
        when = _when(decision.at)
        if decision.action is DecisionAction.REJECT:
            verdict = f":x: Rejected by <@{decision.actor}> at {when}"
            if decision.reason:
                verdict += f": _{decision.reason}_"
        elif decision.action is DecisionAction.EDIT_APPROVE:
            verdict = f":white_check_mark: Edited and approved by <@{decision.actor}> at {when}"
        else:
            verdict = f":white_check_mark: Approved by <@{decision.actor}> at {when}"
        blocks.append(_section(verdict))
    elif status is DraftStatus.SUPERSEDED:
        blocks.append(_section(":arrows_counterclockwise: A newer draft replaced this one."))
    else:
        blocks.append(ContextBlock(elements=[_md(
            ":memo: Written by Hotwash from the evidence below; nothing is posted as final "
            "until an approver acts.")]))

    if decision is not None and decision.edited_markdown:
        blocks.append(_section(mrkdwn(decision.edited_markdown)))
    else:
        blocks.extend(_body(draft, url_base=url_base))
    blocks.append(ContextBlock(elements=[_md(context_line(draft))]))
    if status is DraftStatus.PENDING and decision is None and draft.id is not None:
        blocks.append(draft_actions(draft.id))
    summary = draft_summary(draft)
    return _clip(f"{banner}: {summary}", 2900), _to_dicts(blocks)


def _body(draft: Draft, *, url_base: str | None) -> list[Block]:
    blocks: list[Block] = [_section(f"*Summary*\n{mrkdwn(draft_summary(draft))}")]
    severity, rationale = draft_severity(draft)
    if severity:
        blocks.append(_section(f"*Severity guess:* {severity}"
                               + (f" — {rationale}" if rationale else "")))
    causes = _causes(draft)
    if causes:
        head = "*Likely causes*"
        if draft.grounding_score is not None:
            head += f" (grounding score {draft.grounding_score:.0%})"
        blocks.append(_section(head + "\n" + "\n".join(causes)))
    steps = _next_steps(draft, url_base=url_base)
    if steps:
        blocks.append(_section("*Next steps*\n" + "\n".join(steps)))
    related = _related_runbooks(draft, url_base=url_base)
    if related:
        blocks.append(_section("*Runbooks:* " + ", ".join(related)))
    cited = _cited_evidence(draft)
    if cited:
        blocks.append(ContextBlock(elements=[_md("*Evidence cited*\n" + "\n".join(cited))]))
    if not (causes or steps):
        # Unstructured draft (e.g. an old or hand-written one): show its markdown.
        blocks.append(_section(mrkdwn(draft.markdown)))
    gaps = _gaps(draft)
    if gaps:
        blocks.append(DividerBlock())
        blocks.append(_section(":warning: *Evidence unavailable or degraded*\n"
                               + "\n".join(f"• {g}" for g in gaps[:_MAX_ITEMS])))
    return blocks


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def draft_actions(draft_id: int) -> ActionsBlock:
    value = str(draft_id)
    return ActionsBlock(block_id=f"draft_actions:{draft_id}", elements=[
        ButtonElement(text="Approve", action_id=APPROVE, value=value, style="primary"),
        ButtonElement(text="Edit", action_id=EDIT, value=value),
        ButtonElement(text="Reject", action_id=REJECT, value=value, style="danger"),
        ButtonElement(text="Regenerate", action_id=REGENERATE, value=value,
                      confirm=ConfirmObject(title="Regenerate this draft?",
                                            text="A new draft replaces this one.",
                                            confirm="Regenerate", deny="Cancel")),
    ])


def split_for_inputs(text: str, *, limit: int = _INPUT_MAX) -> list[str]:
    """Cut text into pieces Slack inputs accept (3000 characters), at line ends, so
    ``"\\n".join(pieces) == text`` for any text without a single line over the limit."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        while len(line) > limit:  # one enormous line: cut it hard
            if current:
                pieces.append("\n".join(current))
                current, size = [], 0
            pieces.append(line[:limit])
            line = line[limit:]
        if current and size + 1 + len(line) > limit:
            pieces.append("\n".join(current))
            current, size = [], 0
        size += len(line) + (1 if current else 0)
        current.append(line)
    pieces.append("\n".join(current))
    return pieces


def edit_block_ids(view: Mapping[str, Any]) -> list[str]:
    """The edit modal's text inputs, in order."""
    return [b["block_id"] for b in view.get("blocks", [])
            if str(b.get("block_id", "")).startswith(EDIT_BLOCK + ":")]


def edit_modal(draft: Draft, *, ref: DraftRef) -> dict[str, Any]:
    """A modal prefilled with the draft's markdown; submitting approves the edited text.
    Drafts longer than one Slack input (3000 characters) are split over several."""
    pieces = split_for_inputs(draft.markdown)[:90]  # a modal holds at most 100 blocks
    inputs: list[Block] = []
    for index, piece in enumerate(pieces):
        label = "Draft text" if len(pieces) == 1 else f"Draft text ({index + 1}/{len(pieces)})"
        element = PlainTextInputElement(action_id=EDIT_INPUT, multiline=True,
                                        max_length=_INPUT_MAX,
                                        initial_value=piece or None)
        inputs.append(InputBlock(block_id=f"{EDIT_BLOCK}:{index}", label=label,
                                 element=element, optional=index > 0))
    return View(
        type="modal", callback_id=EDIT_MODAL, private_metadata=ref.dumps(),
        title="Edit draft", submit="Approve edited", close="Cancel",
        blocks=[
            ContextBlock(elements=[_md(f"Draft #{draft.id} · {draft.kind.value}. "
                                       "Submitting approves your edited text.")]),
            *inputs,
        ],
    ).to_dict()


def reject_modal(draft: Draft, *, ref: DraftRef) -> dict[str, Any]:
    """Reject asks why: the reason goes into the audit log."""
    return View(
        type="modal", callback_id=REJECT_MODAL, private_metadata=ref.dumps(),
        title="Reject draft", submit="Reject", close="Cancel",
        blocks=[
            _section(f"Why is draft #{draft.id} wrong or unhelpful?"),
            InputBlock(block_id=REASON_BLOCK, label="Reason",
                       element=PlainTextInputElement(action_id=REASON_INPUT, multiline=True,
                                                     min_length=3, max_length=500)),
        ],
    ).to_dict()


def refusal(action: str) -> str:
    return (f":no_entry: You are not on the approver list, so you cannot {action} this draft. "
            "Ask an approver (HOTWASH_APPROVERS / HOTWASH_APPROVER_GROUP); "
            "this attempt was recorded in the audit log.")


def runbook_results(query: str, matches: Sequence[RunbookMatch], *,
                    url_base: str | None) -> tuple[str, list[dict[str, Any]]]:
    if not matches:
        text = f"No runbook matches _{query}_ well enough."
        return text, _to_dicts([_section(text)])
    lines = [f"*Runbooks for* _{query}_"]
    for match in matches:
        lines.append(f"• {runbook_link(match.id, match.section, url_base=url_base)} "
                     f"— {match.title} (score {match.score:.2f})")
        if match.text:
            lines.append("> " + _clip(match.text.strip().replace("\n", " "), 200))
    text = "\n".join(lines)
    return f"Runbooks for {query}", _to_dicts([_section(text)])


def status_message(incidents: Sequence[Incident],
                   drafts: Sequence[Draft]) -> tuple[str, list[dict[str, Any]]]:
    lines = [f"*Open incidents: {len(incidents)}*"]
    for incident in incidents[:10]:
        lines.append(f"• #{incident.id} {incident.title} — {incident.alert_count} alert(s) "
                     f"since {_when(incident.opened_at)}")
    lines.append(f"*Pending drafts: {len(drafts)}*")
    for draft in drafts[:10]:
        where = f" in <#{draft.channel}>" if draft.channel else ""
        lines.append(f"• draft #{draft.id} ({draft.kind.value}) for incident "
                     f"#{draft.incident_id}{where}, model `{draft.model}`")
    text = "\n".join(lines)
    return f"{len(incidents)} open incidents, {len(drafts)} pending drafts", \
        _to_dicts([_section(text)])


HELP = (
    "*/hotwash* commands:\n"
    "• `/hotwash triage <text>` — triage a symptom or a pasted alert\n"
    "• `/hotwash runbook <query>` — find the runbook sections that fit\n"
    "• `/hotwash postmortem` — draft a postmortem from this incident thread\n"
    "• `/hotwash status` — open incidents and drafts pending approval\n"
    "• `/hotwash help` — this message"
)
