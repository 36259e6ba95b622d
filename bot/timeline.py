"""An incident's timeline: what Hotwash holds (alerts, drafts, decisions) merged with what
people said in Slack (the incident thread, or an incident channel), as citable entries.

Entries are sorted by time and numbered ``T1, T2, ...``; the same inputs always give the
same ids, and later messages never renumber earlier ones. Each entry has a kind:

``alert``       an alert fired (from the store, or an alert bot's message in Slack)
``message``     a human said something in the thread/channel
``draft``       Hotwash wrote a draft (triage, ...)
``decision``    a human approved, edited or rejected a draft
``resolution``  the alert resolved, the incident was closed, or a human declared it
                resolved / mitigated ("resolved", "mitigated", "all clear" at the start)

Noise is dropped and counted: joins/leaves/topic changes and other system subtypes, edits
and deletions, empty messages, other bots' chatter, and Hotwash's own messages (its drafts
and decisions come from the store, with their ids, rather than from their Slack copies).

Slack is read with ``conversations.replies`` / ``conversations.history``, following
``response_metadata.next_cursor``; a 429 is retried after ``Retry-After`` by slack_sdk's
``RateLimitErrorRetryHandler`` (installed on the client if missing). A Slack failure is
kept as a gap on the timeline, never raised: the store's part is still useful.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.domain import (
    Alert,
    AlertSource,
    Decision,
    DecisionAction,
    Draft,
    DraftKind,
    EvidenceItem,
    EvidenceKind,
    Incident,
)

if TYPE_CHECKING:
    from bot.audit.store import AuditStore

log = logging.getLogger(__name__)

PAGE_LIMIT = 200  # conversations.* page size (Slack's documented maximum is 1000)
MAX_MESSAGES = 5000  # bound on what one timeline reads from Slack
MAX_THREADS = 50  # threads expanded when reading an incident channel
ENTRY_CHARS = 600


class EntryKind(StrEnum):
    ALERT = "alert"
    MESSAGE = "message"
    DRAFT = "draft"
    DECISION = "decision"
    RESOLUTION = "resolution"


# Ties at the same instant read naturally in this order.
_KIND_ORDER = {EntryKind.ALERT: 0, EntryKind.MESSAGE: 1, EntryKind.DRAFT: 2,
               EntryKind.DECISION: 3, EntryKind.RESOLUTION: 4}

# Message subtypes written by people; every other subtype is system noise or a bot.
_HUMAN_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}
_RESOLVED_WORDS = re.compile(
    r"^\s*(?::[a-z_]+:\s*)*(resolved|mitigated|all clear|incident (is )?(closed|over))\b",
    re.IGNORECASE)
_ALERT_WORDS = re.compile(r"\b(FIRING|RESOLVED|alert(name)?|triggered)\b", re.IGNORECASE)
_RESOLVED_ALERT = re.compile(r"\bRESOLVED\b|\bOK\b|\brecovered\b", re.IGNORECASE)


@dataclass(frozen=True)
class TimelineEntry:
    """One citable line of the timeline."""

    id: str
    at: datetime
    kind: EntryKind
    author: str
    text: str
    source: str  # "slack:C123:1700000000.000100", "alert:3", "draft:12", "decision:5", ...

    def line(self) -> str:
        """``T3 14:05:10 [message] U123: text`` (one line, for prompts and logs)."""
        text = " ".join(self.text.split())
        return f"{self.id} {self.at:%H:%M:%S} [{self.kind.value}] {self.author}: {text}"


@dataclass(frozen=True)
class Timeline:
    """An incident's timeline and what was left out of it."""

    entries: tuple[TimelineEntry, ...]
    incident_id: int | None = None
    channel: str | None = None
    thread_ts: str | None = None
    noise: int = 0  # Slack messages filtered out as noise
    gaps: tuple[str, ...] = ()  # sources that failed, in words
    slack_calls: int = 0  # conversations.* pages read (after retries)

    def by_id(self) -> dict[str, TimelineEntry]:
        return {e.id: e for e in self.entries}

    def of_kind(self, *kinds: EntryKind) -> list[TimelineEntry]:
        return [e for e in self.entries if e.kind in kinds]

    @property
    def start(self) -> datetime | None:
        return self.entries[0].at if self.entries else None

    @property
    def end(self) -> datetime | None:
        return self.entries[-1].at if self.entries else None

    def evidence(self) -> tuple[EvidenceItem, ...]:
        """The entries as citable evidence (kind ``timeline``), ids unchanged."""
        return tuple(
            EvidenceItem(id=e.id, kind=EvidenceKind.TIMELINE,
                         title=f"{e.kind.value} by {e.author} at {e.at:%Y-%m-%d %H:%M:%S}Z",
                         text=e.text, source=e.source, first_seen=e.at, last_seen=e.at,
                         attrs={"kind": e.kind.value, "author": e.author})
            for e in self.entries
        )

    def markdown(self) -> str:
        """A Markdown table of the entries (times in UTC)."""
        if not self.entries:
            return "_No timeline entries._\n"
        rows = ["| Id | Time (UTC) | Kind | Who | What |", "|---|---|---|---|---|"]
        for e in self.entries:
            text = " ".join(e.text.split()).replace("|", "\\|")
            rows.append(f"| {e.id} | {e.at:%Y-%m-%d %H:%M:%S} | {e.kind.value} | "
                        f"{e.author} | {text} |")
        return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class _Raw:
    at: datetime
    kind: EntryKind
    author: str
    text: str
    source: str
    from_bot: bool = False


@dataclass(frozen=True)
class BotIdentity:
    """How Hotwash recognises its own Slack messages (from ``auth.test``)."""

    user_ids: frozenset[str] = field(default_factory=frozenset)
    bot_ids: frozenset[str] = field(default_factory=frozenset)

    def owns(self, message: Mapping[str, Any]) -> bool:
        return (message.get("bot_id") in self.bot_ids
                or (message.get("user") in self.user_ids and bool(message.get("user"))))


def bot_identity(client: WebClient) -> BotIdentity:
    """Hotwash's own user and bot ids, asked once from Slack; empty if Slack refuses."""
    try:
        resp = client.auth_test()
    except SlackApiError as exc:
        log.warning("auth.test failed, own messages cannot be told apart: %s", exc)
        return BotIdentity()
    user, bot = resp.get("user_id"), resp.get("bot_id")
    return BotIdentity(user_ids=frozenset({user} if user else ()),
                       bot_ids=frozenset({bot} if bot else ()))


# --- Slack reading ------------------------------------------------------------------------


def ensure_rate_limit_retries(client: WebClient, *, retries: int = 3) -> None:
    """Make sure ``client`` retries 429s after ``Retry-After`` (idempotent)."""
    if not any(isinstance(h, RateLimitErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=retries))


class SlackReader:
    """Reads conversations page by page (cursor pagination), counting the pages read."""

    def __init__(self, client: WebClient, *, max_messages: int = MAX_MESSAGES,
                 page_limit: int = PAGE_LIMIT) -> None:
        ensure_rate_limit_retries(client)
        self.client = client
        self.max_messages = max_messages
        self.page_limit = page_limit
        self.calls = 0

    def _pages(self, method: str, **args: Any) -> Iterable[dict[str, Any]]:
        cursor: str | None = None
        seen = 0
        while True:
            resp = getattr(self.client, method)(limit=self.page_limit, cursor=cursor, **args)
            self.calls += 1
            messages = list(resp.get("messages") or [])
            yield from messages
            seen += len(messages)
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor or seen >= self.max_messages:
                return

    def thread(self, *, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Every message of a thread (parent first)."""
        return _dedupe(self._pages("conversations_replies", channel=channel, ts=thread_ts))

    def channel(self, *, channel: str, oldest: datetime | None = None,
                latest: datetime | None = None,
                max_threads: int = MAX_THREADS) -> list[dict[str, Any]]:
        """An incident channel's messages in the window, with the replies of its threads."""
        args: dict[str, Any] = {"channel": channel}
        if oldest is not None:
            args["oldest"] = f"{oldest.timestamp():.6f}"
        if latest is not None:
            args["latest"] = f"{latest.timestamp():.6f}"
        top = list(self._pages("conversations_history", **args))
        out = list(top)
        threads = [m for m in top if m.get("reply_count") and m.get("thread_ts") == m.get("ts")]
        for parent in threads[:max_threads]:
            out.extend(self._pages("conversations_replies", channel=channel,
                                   ts=parent["thread_ts"]))
        return sorted(_dedupe(out), key=lambda m: float(m["ts"]))


def fetch_thread(client: WebClient, *, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """Every message of a thread (parent first), following cursors."""
    return SlackReader(client).thread(channel=channel, thread_ts=thread_ts)


def fetch_channel(client: WebClient, *, channel: str,
                  oldest: datetime | None = None) -> list[dict[str, Any]]:
    """An incident channel's messages since ``oldest``, with their threads' replies."""
    return SlackReader(client).channel(channel=channel, oldest=oldest)


def _dedupe(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # Slack repeats the parent on every conversations.replies page.
    seen: set[str] = set()
    out = []
    for m in messages:
        ts = str(m.get("ts") or "")
        if ts and ts not in seen:
            seen.add(ts)
            out.append(m)
    return out


# --- classification -----------------------------------------------------------------------


def _slack_time(ts: str) -> datetime:
    return datetime.fromtimestamp(float(ts), tz=UTC)


def message_text(message: Mapping[str, Any]) -> str:
    """The words of a message: its text, else its attachments' and blocks' text."""
    text = str(message.get("text") or "").strip()
    if text:
        return text
    parts: list[str] = []
    for att in message.get("attachments") or []:
        for key in ("pretext", "title", "text", "fallback"):
            if att.get(key):
                parts.append(str(att[key]))
                break
    for block in message.get("blocks") or []:
        inner = block.get("text")
        if isinstance(inner, dict) and inner.get("text"):
            parts.append(str(inner["text"]))
    return "\n".join(parts).strip()


def classify(message: Mapping[str, Any], *, own: BotIdentity,
             root_ts: str | None = None) -> EntryKind | None:
    """The entry kind of one Slack message, or None when it is noise."""
    if own.owns(message):
        return None
    subtype = message.get("subtype")
    text = message_text(message)
    if not text:
        return None
    is_bot = bool(message.get("bot_id")) or subtype == "bot_message"
    if is_bot:
        is_root = root_ts is not None and message.get("ts") == root_ts
        if is_root or _ALERT_WORDS.search(text):
            return EntryKind.RESOLUTION if _RESOLVED_ALERT.search(text) and not re.search(
                r"\bFIRING\b", text) else EntryKind.ALERT
        return None  # another bot's chatter
    if subtype not in _HUMAN_SUBTYPES:
        return None  # joins, leaves, topic/purpose, edits, deletions, pins, ...
    if _RESOLVED_WORDS.search(text):
        return EntryKind.RESOLUTION
    return EntryKind.MESSAGE


def _author(message: Mapping[str, Any]) -> str:
    if message.get("user") and not message.get("bot_id"):
        return str(message["user"])
    profile = message.get("bot_profile") or {}
    return str(message.get("username") or profile.get("name") or message.get("bot_id")
               or message.get("user") or "unknown")


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= ENTRY_CHARS else text[:ENTRY_CHARS - 1] + "…"


def slack_entries(messages: Sequence[Mapping[str, Any]], *, channel: str, own: BotIdentity,
                  root_ts: str | None = None) -> tuple[list[_Raw], int]:
    """Raw entries from Slack messages, and how many were dropped as noise."""
    raws: list[_Raw] = []
    noise = 0
    for m in messages:
        kind = classify(m, own=own, root_ts=root_ts)
        if kind is None:
            noise += 1
            continue
        raws.append(_Raw(at=_slack_time(str(m["ts"])), kind=kind, author=_author(m),
                         text=_clip(message_text(m)), source=f"slack:{channel}:{m['ts']}",
                         from_bot=bool(m.get("bot_id")) or m.get("subtype") == "bot_message"))
    return raws, noise


# --- what Hotwash holds --------------------------------------------------------------------


def _alert_text(alert: Alert) -> str:
    service = alert.labels.get("service") or alert.labels.get("job")
    bits = [alert.name, alert.status]
    if alert.severity:
        bits.append(f"severity={alert.severity}")
    if service:
        bits.append(f"service={service}")
    line = " ".join(bits)
    detail = alert.summary or alert.description or alert.text
    return _clip(f"{line}: {detail}" if detail else line)


def _first_line(markdown: str) -> str:
    for line in markdown.splitlines():
        clean = line.strip().lstrip("#").strip()
        if clean:
            return clean
    return ""


_VERBS = {DecisionAction.APPROVE: "approved", DecisionAction.EDIT_APPROVE: "edited and approved",
          DecisionAction.REJECT: "rejected"}


def store_entries(*, incident: Incident | None, alerts: Sequence[Alert],
                  drafts: Sequence[Draft],
                  decisions: Mapping[int, Decision]) -> list[_Raw]:
    """Raw entries from the audit store's alerts, drafts and decisions of one incident."""
    raws: list[_Raw] = []
    for index, alert in enumerate(alerts, start=1):
        # "alertmanager", "grafana", ...; a free-text report is just "alert".
        author = "alert" if alert.source is AlertSource.TEXT else alert.source.value
        if alert.status == "resolved":
            raws.append(_Raw(alert.ends_at or alert.starts_at, EntryKind.RESOLUTION,
                             author, _alert_text(alert), f"alert:{index}"))
        else:
            raws.append(_Raw(alert.starts_at, EntryKind.ALERT, author, _alert_text(alert),
                             f"alert:{index}"))
    for draft in drafts:
        if draft.kind is not DraftKind.TRIAGE or draft.id is None:
            continue  # postmortems and digests are not events of the incident
        summary = str(draft.content.get("summary") or _first_line(draft.markdown))
        raws.append(_Raw(draft.created_at, EntryKind.DRAFT, "hotwash",
                         _clip(f"{draft.kind.value} draft #{draft.id} ({draft.model}): "
                               f"{summary}"), f"draft:{draft.id}"))
        decision = decisions.get(draft.id)
        if decision is not None:
            why = f": {decision.reason}" if decision.reason else ""
            raws.append(_Raw(decision.at, EntryKind.DECISION, decision.actor,
                             _clip(f"{_VERBS[decision.action]} {draft.kind.value} draft "
                                   f"#{draft.id}{why}"), f"decision:{decision.id}"))
    if incident is not None and incident.resolved_at is not None and not any(
            r.kind is EntryKind.RESOLUTION and r.source.startswith("alert:")
            and abs((r.at - incident.resolved_at).total_seconds()) < 1 for r in raws):
        raws.append(_Raw(incident.resolved_at, EntryKind.RESOLUTION, "hotwash",
                         f"incident #{incident.id} resolved", f"incident:{incident.id}"))
    return raws


# --- assembly --------------------------------------------------------------------------------


def assemble(raws: Iterable[_Raw], *, incident_id: int | None = None,
             channel: str | None = None, thread_ts: str | None = None, noise: int = 0,
             gaps: Sequence[str] = (), slack_calls: int = 0) -> Timeline:
    """Sort raw entries by time (then kind, then source) and number them T1.."""
    ordered = sorted(raws, key=lambda r: (r.at, _KIND_ORDER[r.kind], r.source))
    entries = tuple(TimelineEntry(id=f"T{i}", at=r.at, kind=r.kind, author=r.author,
                                  text=r.text, source=r.source)
                    for i, r in enumerate(ordered, start=1))
    return Timeline(entries=entries, incident_id=incident_id, channel=channel,
                    thread_ts=thread_ts, noise=noise, gaps=tuple(gaps),
                    slack_calls=slack_calls)


def build_timeline(*, store: AuditStore | None = None, incident_id: int | None = None,
                   slack: WebClient | None = None, channel: str | None = None,
                   thread_ts: str | None = None, own: BotIdentity | None = None,
                   since: datetime | None = None, page_limit: int = PAGE_LIMIT) -> Timeline:
    """The timeline of an incident from the store and/or Slack.

    With ``incident_id``, the store gives alerts, drafts and decisions, and the incident's
    channel/thread unless ``channel``/``thread_ts`` are given. With ``thread_ts``, Slack's
    thread is read; with only ``channel``, the channel's history (an incident channel)
    since ``since`` (default: an hour before the incident opened)."""
    incident: Incident | None = None
    raws: list[_Raw] = []
    gaps: list[str] = []
    if incident_id is not None:
        if store is None:
            raise ValueError("an incident id needs the store")
        incident = store.get_incident(incident_id=incident_id)
        alerts = store.alerts_for(incident_id=incident_id)
        drafts = store.list_drafts(incident_id=incident_id, limit=500)
        decisions: dict[int, Decision] = {}
        for draft in drafts:
            if draft.id is not None:
                found = store.get_decision(draft_id=draft.id)
                if found is not None:
                    decisions[draft.id] = found
        raws += store_entries(incident=incident, alerts=alerts, drafts=drafts,
                              decisions=decisions)
        channel = channel or incident.channel
        thread_ts = thread_ts or incident.thread_ts
        if since is None:
            since = incident.opened_at - timedelta(hours=1)

    noise = calls = 0
    if slack is not None and channel:
        reader = SlackReader(slack, page_limit=page_limit)
        reader_own = own if own is not None else bot_identity(slack)
        try:
            messages = (reader.thread(channel=channel, thread_ts=thread_ts) if thread_ts
                        else reader.channel(channel=channel, oldest=since))
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else str(exc)
            where = (f"conversations.replies {channel} {thread_ts}" if thread_ts
                     else f"conversations.history {channel}")
            gaps.append(f"Slack {where} failed: {error}")
            messages = []
        calls = reader.calls
        slack_raws, noise = slack_entries(messages, channel=channel, own=reader_own,
                                          root_ts=thread_ts)
        if any(r.source.startswith("alert:") for r in raws):
            # The store already holds the incident's alerts, with their labels; the alert
            # bot's Slack copies would only repeat them.
            copies = [r for r in slack_raws if r.from_bot]
            noise += len(copies)
            slack_raws = [r for r in slack_raws if not r.from_bot]
        raws += slack_raws
    elif slack is None and incident is not None and (thread_ts or channel):
        gaps.append("Slack was not consulted (no client): human messages are missing.")
    return assemble(raws, incident_id=incident_id, channel=channel, thread_ts=thread_ts,
                    noise=noise, gaps=gaps, slack_calls=calls)
