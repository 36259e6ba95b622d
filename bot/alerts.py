"""Parse any alert payload into Alerts.

Handled forms: Alertmanager webhook v4, Grafana webhooks (unified alerting and legacy),
Slack Events API message events (text, attachments and blocks as posted by
Alertmanager's Slack notifier, Grafana, PagerDuty or Datadog, or a human describing a
symptom) and plain text. The raw payload is persisted by the caller *before* parsing;
this module only reads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from bot.domain import Alert, AlertSource

# Labels that change between firings of the same alert series and so must not
# take part in a fingerprint (values, timestamps, replica ids of the alerting stack).
_VOLATILE_LABELS = frozenset({"value", "prometheus_replica", "__value__", "receive"})
_SEVERITY_WORDS = ("critical", "error", "warning", "warn", "info", "page", "high", "low",
                   "p1", "p2", "p3", "p4", "p5", "sev1", "sev2", "sev3", "sev4")


class PayloadError(ValueError):
    """The payload is not a form Hotwash understands; the message is one line."""


def parse_payload(body: bytes | str | Mapping[str, Any], *,
                  content_type: str | None = None) -> list[Alert]:
    """Every alert in ``body``; raises PayloadError with a one-line reason when it has none."""
    data: Any
    if isinstance(body, Mapping):
        data = body
    else:
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        stripped = text.strip()
        if not stripped:
            raise PayloadError("empty payload")
        json_expected = bool(content_type and "json" in content_type)
        if stripped[0] in "{[" or json_expected:
            try:
                data = json.loads(stripped)
            except json.JSONDecodeError as exc:
                if json_expected:
                    raise PayloadError(f"invalid JSON: {exc.msg} at line {exc.lineno}") from None
                return [from_text(stripped)]
        else:
            return [from_text(stripped)]
    if not isinstance(data, Mapping):
        raise PayloadError("expected a JSON object")
    return parse_object(data)


def parse_object(data: Mapping[str, Any]) -> list[Alert]:
    """Dispatch a decoded JSON object to the parser for its form."""
    if isinstance(data.get("alerts"), list) and (
        "orgId" in data or "state" in data and "title" in data
    ):
        return from_alertmanager(data, source=AlertSource.GRAFANA)
    if isinstance(data.get("alerts"), list):
        return from_alertmanager(data, source=AlertSource.ALERTMANAGER)
    if "ruleName" in data or "evalMatches" in data:
        return [from_grafana_legacy(data)]
    if data.get("type") == "event_callback" and isinstance(data.get("event"), Mapping):
        return [from_slack_event(data["event"])]
    if data.get("type") in ("message", "app_mention"):
        return [from_slack_event(data)]
    if isinstance(data.get("text"), str) and data["text"].strip():
        return [from_text(data["text"])]
    raise PayloadError(
        "unrecognised payload: expected an Alertmanager v4 or Grafana webhook body, "
        "a Slack message event, or plain text"
    )


# --- Alertmanager / Grafana ------------------------------------------------------


def from_alertmanager(data: Mapping[str, Any], *, source: AlertSource) -> list[Alert]:
    """Alertmanager webhook v4 (and Grafana unified alerting, which shares its shape)."""
    raw_alerts = data.get("alerts")
    if not isinstance(raw_alerts, list) or not raw_alerts:
        raise PayloadError("webhook body has no alerts")
    common_labels = _str_map(data.get("commonLabels"))
    common_annotations = _str_map(data.get("commonAnnotations"))
    group_key = data.get("groupKey") if isinstance(data.get("groupKey"), str) else None
    alerts = []
    for index, item in enumerate(raw_alerts):
        if not isinstance(item, Mapping):
            raise PayloadError(f"alerts[{index}] is not an object")
        labels = {**common_labels, **_str_map(item.get("labels"))}
        annotations = {**common_annotations, **_str_map(item.get("annotations"))}
        name = labels.get("alertname") or str(data.get("title") or "") or "UnnamedAlert"
        status = "resolved" if str(item.get("status", data.get("status"))) == "resolved" \
            else "firing"
        summary = annotations.get("summary") or annotations.get("message") or ""
        if not summary and source is AlertSource.GRAFANA:
            summary = str(data.get("message") or data.get("title") or "")
        description = annotations.get("description") or annotations.get("runbook_url", "")
        fp = str(item.get("fingerprint") or "") or fingerprint(name=name, labels=labels)
        alerts.append(Alert(
            name=name,
            source=source,
            status=status,
            severity=_severity(labels),
            labels=labels,
            annotations=annotations,
            summary=summary,
            description=description,
            starts_at=_time(item.get("startsAt")) or datetime.now(UTC),
            ends_at=_end_time(item.get("endsAt")),
            generator_url=_opt_str(item.get("generatorURL")),
            fingerprint=fp,
            group_key=group_key,
        ))
    return alerts


def from_grafana_legacy(data: Mapping[str, Any]) -> Alert:
    """Grafana legacy alerting webhook (ruleName, state, evalMatches, tags)."""
    name = str(data.get("ruleName") or data.get("title") or "GrafanaAlert")
    labels = {"alertname": name, **_str_map(data.get("tags"))}
    state = str(data.get("state", "alerting"))
    return Alert(
        name=name,
        source=AlertSource.GRAFANA,
        status="resolved" if state == "ok" else "firing",
        severity=_severity(labels),
        labels=labels,
        summary=str(data.get("title") or ""),
        description=str(data.get("message") or ""),
        generator_url=_opt_str(data.get("ruleUrl")),
        fingerprint=fingerprint(name=name, labels=labels),
    )


# --- Slack messages ----------------------------------------------------------------

_FIRING = re.compile(r"\[(FIRING|RESOLVED)(?::\s*\d+)?\]\s*([A-Za-z_][\w:.-]*)", re.I)
_LABEL_LINE = re.compile(
    r"^[ \t]*(?:[-•*][ \t]*)?\*?([a-zA-Z_][\w.]*)\*?[ \t]*(?:=|:)[ \t]*\*?[ \t]*`?"
    r"([^`\n]+?)`?\*?[ \t]*$",
    re.M,
)
_DATADOG = re.compile(r"^(Triggered|Recovered|Warn|Re-Triggered|No Data):\s*(.+)$", re.I | re.M)
_PAGERDUTY = re.compile(r"(Triggered|Resolved|Acknowledged)\s*#?\d*\s*[:\-]?\s*(.+)", re.I)


def from_slack_event(event: Mapping[str, Any]) -> Alert:
    """A Slack message event: an alerting tool's post or a human's symptom report."""
    text = slack_message_text(event)
    if not text.strip():
        raise PayloadError("Slack message has no text, attachments or blocks")
    alert = from_text(text, source=AlertSource.SLACK)
    source = AlertSource.SLACK
    profile = event.get("bot_profile")
    profile_name = profile.get("name", "") if isinstance(profile, Mapping) else ""
    username = str(event.get("username") or profile_name or "").lower()
    if "pagerduty" in username or "pagerduty" in text.lower():
        source = AlertSource.PAGERDUTY
    elif "datadog" in username or "%%%" in text:
        source = AlertSource.DATADOG
    return alert.model_copy(update={
        "source": source,
        "channel": _opt_str(event.get("channel")),
        "thread_ts": _opt_str(event.get("thread_ts") or event.get("ts")),
        "starts_at": _slack_ts(event.get("ts")) or alert.starts_at,
    })


def slack_message_text(event: Mapping[str, Any]) -> str:
    """All human-readable text of a message: text, attachments (title, text, fields), blocks."""
    parts: list[str] = []
    if isinstance(event.get("text"), str):
        parts.append(event["text"])
    for att in event.get("attachments") or []:
        if not isinstance(att, Mapping):
            continue
        for key in ("pretext", "title", "text", "fallback"):
            value = att.get(key)
            if isinstance(value, str) and value and value not in parts:
                parts.append(value)
        for field in att.get("fields") or []:
            if isinstance(field, Mapping):
                parts.append(f"{field.get('title', '')}: {field.get('value', '')}")
    parts.extend(_block_texts(event.get("blocks") or []))
    seen: set[str] = set()
    unique = []
    for part in parts:
        if part.strip() and part not in seen:
            seen.add(part)
            unique.append(part)
    return "\n".join(unique)


def _block_texts(blocks: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        text = block.get("text")
        if isinstance(text, Mapping) and isinstance(text.get("text"), str):
            out.append(text["text"])
        elif isinstance(text, str):
            out.append(text)
        for field in block.get("fields") or []:
            if isinstance(field, Mapping) and isinstance(field.get("text"), str):
                out.append(field["text"])
        for element in block.get("elements") or []:
            if isinstance(element, Mapping):
                out.extend(_block_texts([element]))
    return out


# --- plain text ----------------------------------------------------------------------


def from_text(text: str, *, source: AlertSource = AlertSource.TEXT) -> Alert:
    """Free text: a pasted alert notification or a human describing a symptom."""
    clean = text.replace("%%%", "").strip()
    labels: dict[str, str] = {}
    for key, value in _LABEL_LINE.findall(clean):
        key = key.strip().lower()
        if key in ("description", "summary", "message", "details", "alert", "value", "source"):
            continue
        if len(value) <= 200 and key not in labels:
            labels[key] = value.strip()
    status = "firing"
    name = labels.get("alertname", "")
    firing = _FIRING.search(clean)
    if firing:
        name = name or firing.group(2)
        status = "resolved" if firing.group(1).upper() == "RESOLVED" else "firing"
    if not name:
        dd = _DATADOG.search(clean)
        if dd:
            name = _title(dd.group(2))
            status = "resolved" if dd.group(1).lower() == "recovered" else "firing"
    if not name:
        pd = _PAGERDUTY.match(clean)
        if pd and source is not AlertSource.TEXT:
            name = _title(pd.group(2))
    summary = (_annotation(clean, "summary") or _notifier_alert_line(clean)
               or _annotation(clean, "description") or "")
    first_line = clean.splitlines()[0] if clean else ""
    if not name:
        name = _title(first_line)
    if name and "alertname" not in labels and (firing or re.fullmatch(r"[A-Za-z_][\w:]*", name)):
        labels["alertname"] = name
    severity = labels.get("severity") or _severity_from_text(clean)
    return Alert(
        name=name or "Symptom report",
        source=source,
        status=status,
        severity=severity,
        labels=labels,
        summary=summary or (first_line if first_line != name else ""),
        description=_annotation(clean, "description") or "",
        text=clean,
        fingerprint=fingerprint(name=name, labels=labels, text=None if labels else clean),
    )


def _notifier_alert_line(text: str) -> str | None:
    """The summary in Alertmanager's default Slack template: ``*Alert:* <summary> - `sev```."""
    line = _annotation(text, "alert")
    return re.sub(r"\s+-\s+`?\w+`?$", "", line) if line else None


def _annotation(text: str, key: str) -> str | None:
    match = re.search(rf"\*?{key}\*?\s*[:=]\s*\*?(.+)", text, re.I)
    return match.group(1).strip(" *`") if match else None


def _title(line: str) -> str:
    line = re.sub(r"[*_`<>]", "", line).strip()
    return line[:120]


def _severity(labels: Mapping[str, str]) -> str | None:
    for key in ("severity", "priority", "level"):
        if labels.get(key):
            return labels[key]
    return None


def _severity_from_text(text: str) -> str | None:
    lowered = text.lower()
    match = re.search(r"\[(p[1-5])\]", lowered)
    if match:
        return match.group(1).upper()
    for word in _SEVERITY_WORDS[:5]:
        if re.search(rf"\b{word}\b", lowered):
            return "warning" if word == "warn" else word
    return None


# --- identity ------------------------------------------------------------------------


def fingerprint(*, name: str, labels: Mapping[str, str], text: str | None = None) -> str:
    """Stable id of an alert series: alertname + identifying labels (or normalised text)."""
    if text is not None:
        # Symptom messages: ignore numbers and case, so "5xx at 12:03" and "5xx at 12:07"
        # from the same person describe one series.
        basis = re.sub(r"\d+", "#", text.lower())
        basis = re.sub(r"\s+", " ", basis).strip()
    else:
        stable = {k: v for k, v in labels.items() if k not in _VOLATILE_LABELS}
        stable.setdefault("alertname", name)
        basis = json.dumps(stable, sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


# --- small coercions -------------------------------------------------------------------


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _opt_str(value: Any) -> str | None:
    return str(value) if value else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        # Go's RFC3339Nano has up to nine fractional digits; Python takes six.
        match = re.match(r"(.*\.\d{6})\d*(.*)", value.replace("Z", "+00:00"))
        if not match:
            return None
        try:
            parsed = datetime.fromisoformat(match.group(1) + match.group(2))
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _end_time(value: Any) -> datetime | None:
    parsed = _time(value)
    # Alertmanager sends 0001-01-01T00:00:00Z for "not ended".
    if parsed is None or parsed.year < 1970:
        return None
    return parsed


def _slack_ts(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError):
        return None
