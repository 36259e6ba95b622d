"""Redaction: the one place secrets and personal data are removed before text leaves us.

Logs, alert text and Slack text all pass through :class:`Redactor` before they reach a
model, a draft or a Slack message. Each hit is replaced by ``[REDACTED:<kind>]`` so a
reader still sees that something was there and what it was.

The patterns are deliberately specific (known token prefixes, key names, a Luhn check
for card numbers) so ordinary operational text survives: timestamps, UUIDs, IP
addresses, version strings, trace ids, durations and hostnames are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

# Key names whose value is a secret in key=value, key: value and JSON "key": "value".
_SECRET_KEYS = (
    r"password|passwd|pwd|pass|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key|"
    r"secret[_-]?key|private[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token|"
    r"token|credentials?|aws_secret_access_key|session[_-]?key"
)


if TYPE_CHECKING:
    from bot.settings import Settings


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    # Replaces one match; None means "replace the whole match with the marker".
    replace: Callable[[re.Match[str], str], str] | None = None
    # A last check on the matched text (e.g. Luhn); False keeps the text as it is.
    accept: Callable[[str], bool] | None = None


def _luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37, Discover 6011/65, JCB 35,
# Diners 36/38/30. Epoch timestamps (1...) and compact dates (20...) never qualify.
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[045678]|6(?:011|5))")


def _card_ok(candidate: str) -> bool:
    digits = "".join(c for c in candidate if c.isdigit())
    return bool(_CARD_PREFIX.match(digits)) and _luhn_ok(digits)


def _keep_group(name: str) -> Callable[[re.Match[str], str], str]:
    """Keep the named prefix group (e.g. ``password=``) and replace only the value."""

    def replace(match: re.Match[str], marker: str) -> str:
        return match.group(name) + marker

    return replace


# Order matters: multi-line and structured secrets first, so a PEM body or a URL
# password is one redaction, not several smaller ones.
_RULES: tuple[_Rule, ...] = (
    _Rule(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"
        ),
    ),
    _Rule(
        "url_password",
        re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?=@)"),
        replace=_keep_group("keep"),
    ),
    _Rule(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
    _Rule("slack_token", re.compile(r"\bxox[abposer]-[A-Za-z0-9-]{10,}")),
    _Rule("slack_token", re.compile(r"\bxapp-\d-[A-Za-z0-9-]{10,}")),
    _Rule("slack_webhook", re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+")),
    _Rule("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    _Rule("github_token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}")),
    _Rule("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b")),
    _Rule(
        "auth_header",
        # Authorization: Basic/Bearer/ApiKey/Token/Digest <credentials>, any casing.
        re.compile(
            r"(?P<keep>(?i:authorization)[\"']?\s*[:=]\s*[\"']?"
            r"(?i:basic|bearer|apikey|token|digest)\s+)[A-Za-z0-9._~+/=-]{6,}"
        ),
        replace=_keep_group("keep"),
    ),
    _Rule(
        "bearer_token",
        re.compile(r"(?P<keep>\b(?:[Bb]earer|[Tt]oken)\s+)[A-Za-z0-9._~+/=-]{16,}"),
        replace=_keep_group("keep"),
    ),
    _Rule(
        "aws_secret_key",
        re.compile(
            r"(?P<keep>(?i:aws)?_?(?i:secret)_?(?i:access)?_?(?i:key)[\"']?\s*[:=]\s*[\"']?)"
            r"[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"
        ),
        replace=_keep_group("keep"),
    ),
    _Rule(
        "secret_value",
        # key=value, key: value, "key": "value"; the value stops at whitespace, a quote,
        # a comma or an ampersand (query strings).
        re.compile(
            r"(?P<keep>(?<![A-Za-z0-9])[\"']?(?i:" + _SECRET_KEYS + r")[\"']?\s*[:=]\s*[\"']?)"
            r"(?![\"']?\[REDACTED)[^\s\"',&;}]{3,}"
        ),
        replace=_keep_group("keep"),
    ),
    _Rule(
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
            r"\.[A-Za-z]{2,}\b"
        ),
    ),
    _Rule(
        "card_number",
        # Digits in one run, or in groups of four (Amex 4-6-5) split by one space or
        # dash; never inside a longer token (UUID, id, version, IP). The issuer prefix
        # and the Luhn checksum are checked on the match.
        re.compile(
            r"(?<![\w.:/-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?"
            r"|\d{4}[ -]\d{6}[ -]\d{5})(?![\w.:/-])"
        ),
        accept=_card_ok,
    ),
)


class Redactor:
    """Replaces secrets and personal data with ``[REDACTED:<kind>]`` markers.

    ``extra_patterns`` are site-specific regexes (``HOTWASH_REDACTION_PATTERNS``);
    their matches become ``[REDACTED:custom]``. :meth:`redact` returns the text and
    the number of redactions so each evidence bundle can report its count.
    """

    def __init__(self, *, extra_patterns: Iterable[str] = ()) -> None:
        extra = tuple(_Rule("custom", re.compile(p)) for p in extra_patterns)
        self._rules = _RULES + extra

    def redact(self, text: str) -> tuple[str, int]:
        """Return ``(redacted_text, count)``; ordinary text comes back unchanged with 0."""
        total = 0
        for rule in self._rules:
            text, n = _apply(rule, text)
            total += n
        return text, total

    def redact_text(self, text: str) -> str:
        """Only the redacted text, when the count is not needed."""
        return self.redact(text)[0]


def _apply(rule: _Rule, text: str) -> tuple[str, int]:
    marker = f"[REDACTED:{rule.kind}]"
    count = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal count
        if rule.accept is not None and not rule.accept(match.group(0)):
            return match.group(0)
        count += 1
        if rule.replace is not None:
            return rule.replace(match, marker)
        return marker

    out = rule.pattern.sub(substitute, text)
    return out, count


def build_redactor(settings: Settings) -> Redactor:
    """The one Redactor configuration for this process (built-in rules plus
    HOTWASH_REDACTION_PATTERNS, which Settings has already checked compile)."""
    return Redactor(extra_patterns=settings.redaction_patterns)
