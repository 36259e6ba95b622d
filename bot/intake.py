"""The intake room: every alert, from a webhook or an alert channel, enters here.

One road for all of them: persist the raw payload verbatim -> parse (``bot.alerts``) ->
group into an incident (fingerprint + ``incident_window_s``, so a flapping alert opens one
incident, not twenty) -> triage new incidents only -> reply in the alert's thread: a short
"working on it" message first, then the draft in its place (``chat.update``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from slack_sdk.errors import SlackApiError

from bot import metrics, telemetry
from bot.alerts import PayloadError, parse_payload
from bot.domain import Alert, Draft, Incident
from bot.slack import blocks

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("hotwash.intake")


class Triage(Protocol):
    """``bot.pipeline.triage``: never raises for a failing dependency."""

    def __call__(self, *, alert: Alert, services: Services,
                 incident: Incident | None = None) -> Draft: ...


class Poster(Protocol):
    def post(self, *, channel: str, text: str, blocks: Any = None,
             thread_ts: str | None = None) -> str: ...

    def update(self, *, channel: str, ts: str, text: str, blocks: Any = None) -> None: ...


def pipeline_triage() -> Triage:
    """The real triage pipeline, imported late so the Slack room starts without it."""
    from bot.pipeline import triage

    return triage


@dataclass(frozen=True)
class Triaged:
    """A stored draft and where it was shown (``ts`` None: it could not be posted)."""

    draft: Draft
    channel: str | None = None
    ts: str | None = None


@dataclass(frozen=True)
class Grouped:
    """One parsed alert and the incident it joined."""

    alert: Alert
    incident: Incident
    created: bool


@dataclass
class Accepted:
    """What intake did with one payload."""

    received_id: int
    grouped: list[Grouped] = field(default_factory=list)
    skipped: list[Alert] = field(default_factory=list)
    """Alerts that do not start triage (resolved notifications)."""
    jobs: list[Future[Triaged | None]] = field(default_factory=list)

    @property
    def new_incidents(self) -> list[Grouped]:
        return [g for g in self.grouped if g.created]


class Intake:
    """Persist, parse, group, triage, post. Shared by the webhooks and the Slack listener."""

    def __init__(self, *, services: Services, poster: Poster | None,
                 triage: Triage | None = None, executor: Executor | None = None,
                 default_channel: str | None = None,
                 url_base: str | None = None) -> None:
        self.services = services
        self.store = services.store
        self.poster = poster
        self._triage = triage
        self.executor = executor
        settings = services.settings
        self.window_s = settings.incident_window_s
        self.default_channel = default_channel or (
            settings.alert_channels[0] if settings.alert_channels else None)
        self.url_base = url_base if url_base is not None else settings.runbook_url_base
        # The store groups atomically; this lock only spares it needless contention when a
        # burst of one alert arrives on many threads at once.
        self._group_lock = threading.Lock()
        self._persist_lock = threading.Lock()

    @property
    def triage(self) -> Triage:
        if self._triage is None:
            self._triage = pipeline_triage()
        return self._triage

    # --- the steps --------------------------------------------------------------------

    def persist(self, *, source: str, body: bytes, headers: Mapping[str, str],
                idempotency_key: str | None = None) -> int:
        """Store the raw payload verbatim before anything reads it; returns its row id."""
        # Acks wait on this write. Queueing concurrent requests on a Python lock instead of
        # in the database's own lock wait (SQLite polls with sleeps of up to 100 ms) halved
        # the p99 ack latency under 20 concurrent requests (benchmarks/slack_ack.py).
        with self._persist_lock:
            return self.store.record_received(source=source, body=body, headers=dict(headers),
                                              idempotency_key=idempotency_key)

    def parse(self, *, body: bytes | str | Mapping[str, Any], received_id: int,
              content_type: str | None = None) -> list[Alert]:
        """Alerts in the payload, linked to their raw row. Raises ``PayloadError``."""
        alerts = parse_payload(body, content_type=content_type)
        return [a.model_copy(update={"received_id": received_id}) for a in alerts]

    def group(self, *, received_id: int, alerts: list[Alert]) -> Accepted:
        """Attach each alert to its incident; only firing alerts can start a triage."""
        accepted = Accepted(received_id=received_id)
        for alert in alerts:
            metrics.record_alert_received(source=alert.source.value)
            with self._group_lock:
                incident, created = self.store.open_incident(alert=alert, window_s=self.window_s)
            if alert.status == "resolved":
                # The store resolves the incident it joins; a recovery never starts triage.
                accepted.skipped.append(alert)
                continue
            if not created:
                metrics.record_alert_deduplicated(source=alert.source.value)
            accepted.grouped.append(Grouped(alert=alert, incident=incident, created=created))
        return accepted

    # --- entry points -------------------------------------------------------------------

    def accept(self, *, received_id: int, body: bytes | str | Mapping[str, Any],
               content_type: str | None = None, background: bool = True) -> Accepted:
        """Parse and group a persisted payload, then triage its new incidents."""
        try:
            alerts = self.parse(body=body, received_id=received_id, content_type=content_type)
        except PayloadError as exc:
            self.store.mark_received(received_id=received_id, status="failed", error=str(exc))
            raise
        accepted = self.group(received_id=received_id, alerts=alerts)
        self.store.mark_received(received_id=received_id, status="processed")
        for grouped in accepted.new_incidents:
            channel = grouped.alert.channel or self.default_channel
            thread_ts = grouped.alert.thread_ts if grouped.alert.channel else None
            job = self._run(background, self.triage_and_post, alert=grouped.alert,
                            incident=grouped.incident, channel=channel, thread_ts=thread_ts)
            accepted.jobs.append(job)
        return accepted

    def slack_message(self, *, event: Mapping[str, Any], received_id: int) -> Accepted:
        """A message posted in an alert channel. Parsing and grouping run here (on Bolt's
        lazy-listener thread); triage and the paced posting run on the intake's executor,
        so an alert storm waiting for its channel's posting slots never holds up the
        listener threads that handle Approve clicks. Raises ``PayloadError`` for a
        message with no text."""
        with telemetry.correlated():  # the message's receipt: its id follows it to the draft
            return self.accept(received_id=received_id, body=event, background=True)

    def _run(self, background: bool, fn: Callable[..., Triaged | None],
             **kwargs: Any) -> Future[Triaged | None]:
        if background and self.executor is not None:
            return self.executor.submit(telemetry.in_context(fn), **kwargs)
        future: Future[Triaged | None] = Future()
        try:
            future.set_result(fn(**kwargs))
        except Exception as exc:  # noqa: BLE001 - reported through the future
            future.set_exception(exc)
        return future

    # --- triage and the thread ----------------------------------------------------------

    def triage_and_post(self, *, alert: Alert, incident: Incident, channel: str | None,
                        thread_ts: str | None) -> Triaged | None:
        """Working message in the alert's thread, then the draft in its place.
        Returns None only when triage itself failed (the pipeline promises it never does)."""
        with telemetry.correlated():
            started = time.perf_counter()
            working_ts: str | None = None
            if channel is not None and self.poster is not None:
                try:
                    if thread_ts is None:
                        text, root = blocks.alert_root(alert, incident)
                        thread_ts = self.poster.post(channel=channel, text=text, blocks=root)
                        self.store.set_incident_thread(incident_id=incident.id, channel=channel,
                                                       thread_ts=thread_ts)
                    text, body = blocks.working(alert)
                    working_ts = self.poster.post(channel=channel, text=text, blocks=body,
                                                  thread_ts=thread_ts)
                except SlackApiError as exc:
                    log.warning("could not post the working message: %s",
                                exc.response.get("error"))
            try:
                draft = self.triage(alert=alert, services=self.services, incident=incident)
            except Exception:  # the pipeline promises not to raise; never lose the thread
                log.exception("triage failed for incident %s", incident.id)
                if channel is not None and working_ts is not None and self.poster is not None:
                    self._say(channel, working_ts,
                              f":warning: Hotwash could not draft a triage for *{alert.name}*;"
                              f" the alert is recorded (incident #{incident.id}).")
                return None
            posted_ts = None
            if channel is not None and self.poster is not None:
                with telemetry.stage("post") as post_stage:
                    posted_ts = self.show_draft(draft, channel=channel, ts=working_ts,
                                                thread_ts=thread_ts)
                    if posted_ts is None:
                        post_stage.fail("draft not posted")
            # Alert received (the outermost correlated block, e.g. the webhook) -> posted.
            path = metrics.triage_path(model=draft.model, chain=draft.params.get("chain"))
            metrics.record_triage(seconds=max(telemetry.elapsed(),
                                              time.perf_counter() - started), path=path)
            log.info("triage draft ready", extra={
                "draft_id": draft.id, "incident_id": incident.id, "path": path,
                "posted": posted_ts is not None})
            return Triaged(draft=draft, channel=channel if posted_ts else None, ts=posted_ts)

    def show_draft(self, draft: Draft, *, channel: str, ts: str | None,
                   thread_ts: str | None) -> str | None:
        """Replace the working message with the draft (or post it if there is none)."""
        assert self.poster is not None
        text, body = blocks.draft_message(draft, url_base=self.url_base)
        try:
            if ts is not None:
                self.poster.update(channel=channel, ts=ts, text=text, blocks=body)
            else:
                ts = self.poster.post(channel=channel, text=text, blocks=body,
                                      thread_ts=thread_ts)
        except SlackApiError as exc:
            log.warning("could not post draft %s: %s", draft.id, exc.response.get("error"))
            return None
        if draft.id is not None:
            self.store.set_draft_message(draft_id=draft.id, channel=channel, message_ts=ts)
        return ts

    def _say(self, channel: str, ts: str, text: str) -> None:
        assert self.poster is not None
        try:
            self.poster.update(channel=channel, ts=ts, text=text,
                               blocks=[{"type": "section",
                                        "text": {"type": "mrkdwn", "text": text}}])
        except SlackApiError as exc:
            log.warning("could not update message: %s", exc.response.get("error"))


__all__ = ["Accepted", "Grouped", "Intake", "PayloadError", "Triage", "Triaged",
           "pipeline_triage"]
