"""Digest numbers against a hand-computed fixture, the renderings, and the scheduled job
posting through a real WebClient to the fake Slack API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk import WebClient

from bot.approval import Approvers, approve
from bot.audit.store import AuditStore
from bot.digest import (
    NARRATIVE_LABEL,
    Counted,
    Durations,
    compute_digest,
    digest_blocks,
    digest_markdown,
    human_duration,
)
from bot.domain import Alert, Draft, DraftKind
from bot.jobs import JobContext, execute
from bot.services import Services
from bot.settings import Settings
from bot.slack.poster import ChannelPacer, SlackPoster
from tests.fakes.slack_api import BOT_TOKEN, FakeSlackAPI

START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
APPROVERS = Approvers(user_ids=frozenset({"U0LEAD"}))


class FakeClock:
    def __init__(self) -> None:
        self.moment = START

    def now(self) -> datetime:
        return self.moment


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 11, 28, hh, mm, ss, tzinfo=UTC)


def alert(name: str, fp: str, *, severity: str | None, channel: str, status: str = "firing",
          **labels: str) -> Alert:
    return Alert.model_validate({"name": name, "fingerprint": fp, "severity": severity,
                                 "labels": labels, "channel": channel, "status": status,
                                 "summary": name})


def triage(incident_id: int, created: datetime, channel: str = "C1") -> Draft:
    return Draft(kind=DraftKind.TRIAGE, incident_id=incident_id, content={},
                 markdown=f"## Triage {incident_id}", model="evidence-only",
                 created_at=created, channel=channel)


@pytest.fixture
def busy_hour(any_store: AuditStore) -> Iterator[AuditStore]:
    """09:00-10:00 in channel C1, hand-computed expectations in the test below."""
    store = any_store
    clock = FakeClock()
    store.clock = clock
    checkout = alert("CheckoutHighErrorRate", "fp-checkout", severity="critical",
                     channel="C1", service="checkout")
    payments = alert("PaymentsLatencyHigh", "fp-pay", severity="warning", channel="C1",
                     service="payments")
    disk = alert("DiskFull", "fp-disk", severity=None, channel="C1", job="node")
    other = alert("SearchDown", "fp-search", severity="critical", channel="C2",
                  service="search")

    def fire(moment: datetime, a: Alert) -> int:
        clock.moment = moment
        incident, _ = store.open_incident(alert=a, window_s=3600)
        return incident.id

    inc1 = fire(at(8, 50), checkout)                         # opened before the window
    d1 = store.save_draft(draft=triage(inc1, at(8, 52)))
    fire(at(9, 5), checkout)
    clock.moment = at(9, 7)
    approve(store=store, draft_id=d1.id or 0, actor="U0LEAD", approvers=APPROVERS)  # 15m
    fire(at(9, 10), checkout)
    inc4 = fire(at(9, 15), other)                             # another channel
    store.save_draft(draft=triage(inc4, at(9, 16), channel="C2"))
    inc2 = fire(at(9, 20), payments)
    d2 = store.save_draft(draft=triage(inc2, at(9, 21, 30)))  # 90 s after opening
    inc3 = fire(at(9, 30), disk)
    store.save_draft(draft=triage(inc3, at(9, 33)))           # 180 s after opening
    fire(at(9, 40), payments.model_copy(update={"status": "resolved"}))
    clock.moment = at(9, 45)
    approve(store=store, draft_id=d2.id or 0, actor="U0LEAD", approvers=APPROVERS)  # 23m30s
    store.save_draft(draft=triage(inc3, at(9, 50)))           # supersedes 09:33
    fire(at(10, 5), checkout)                                  # after the window
    yield store


def test_digest_numbers_match_the_hand_computed_hour(busy_hour: AuditStore) -> None:
    stats = compute_digest(store=busy_hour, channel="C1", start=START, end=END)

    assert (stats.alerts, stats.firing, stats.resolved_alerts) == (5, 4, 1)
    assert stats.by_severity == (Counted("critical", 2), Counted("warning", 2),
                                 Counted("none", 1))
    assert stats.by_service == (Counted("checkout", 2), Counted("payments", 2),
                                Counted("node", 1))
    assert stats.noisiest == (Counted("CheckoutHighErrorRate", 2), Counted("DiskFull", 1),
                              Counted("PaymentsLatencyHigh", 1))
    assert (stats.incidents_opened, stats.incidents_resolved) == (2, 1)
    assert stats.pending_drafts == 1
    assert stats.oldest_pending_s == 600.0
    assert stats.time_to_first_draft == Durations(samples=2, median_s=135.0, max_s=180.0)
    assert stats.time_to_approval == Durations(samples=2, median_s=1155.0, max_s=1410.0)


def test_recurring_groups_are_incidents_with_repeats_in_the_window(
        busy_hour: AuditStore) -> None:
    stats = compute_digest(store=busy_hour, channel="C1", start=START, end=END)
    # Incident 1 (checkout) fired twice in the window; payments (incident 3 in id order:
    # 1 checkout, 2 search in C2, 3 payments, 4 disk) fired then resolved: two alerts.
    labels = [(g.label.split(" ", 1)[0], g.count) for g in stats.top_groups]
    assert labels == [("#1", 2), ("#3", 2)]
    assert "CheckoutHighErrorRate" in stats.top_groups[0].label


def test_all_channels_and_an_empty_window(busy_hour: AuditStore) -> None:
    everything = compute_digest(store=busy_hour, channel=None, start=START, end=END)
    assert everything.alerts == 6  # the C2 alert joins
    assert everything.pending_drafts == 2
    empty = compute_digest(store=busy_hour, channel="C1", start=at(12, 0), end=at(13, 0))
    assert empty.alerts == 0 and empty.time_to_first_draft.samples == 0
    assert empty.pending_drafts == 1 and empty.quiet is False  # the 09:50 draft still waits
    assert compute_digest(store=busy_hour, channel="C9", start=START, end=END).quiet


def test_renderings_show_the_computed_numbers_and_label_the_narrative(
        busy_hour: AuditStore) -> None:
    stats = compute_digest(store=busy_hour, channel="C1", start=START, end=END)
    md = digest_markdown(stats)
    assert "**Alerts:** 5 (4 firing, 1 resolved)" in md
    assert "critical 2, warning 2, none 1" in md
    assert "**Time to first draft:** median 2m 15s, max 3m (2 samples)" in md
    assert "**Time to approval:** median 19m 15s, max 23m 30s (2 samples)" in md
    assert NARRATIVE_LABEL not in md
    blocks = digest_blocks(stats, narrative="A noisy hour for checkout.")
    texts = [str(b) for b in blocks]
    label_at = next(i for i, t in enumerate(texts) if NARRATIVE_LABEL in t)
    numbers_at = next(i for i, t in enumerate(texts) if "4 firing" in t)
    assert numbers_at < label_at  # numbers first, the model's words after their label
    assert "A noisy hour for checkout." in texts[label_at + 1]


def test_human_durations() -> None:
    assert [human_duration(s) for s in (None, 42, 60, 135, 3600, 5400, 3 * 86400)] == [
        "n/a", "42s", "1m", "2m 15s", "1h", "1h 30m", "3d"]


def test_digest_job_posts_to_the_channel_and_audits_it(busy_hour: AuditStore) -> None:
    settings = Settings(alert_channels=["C1"], digest_cron="0 * * * *")
    with FakeSlackAPI() as fake:
        client = WebClient(base_url=fake.url, token=BOT_TOKEN)
        poster = SlackPoster(client=client, pacer=ChannelPacer(interval_s=0))
        services = Services(settings=settings, store=busy_hour, runbooks=None,  # type: ignore[arg-type]
                            logs=None, models=[])  # type: ignore[arg-type]
        context = JobContext(settings=settings, services=services, slack=poster)
        outcome = execute(name="digest", job_id="digest:C1", slot=END,
                          params={"channel": "C1"}, context=context)
        quiet = execute(name="digest", job_id="digest:C1", slot=END,
                        params={"channel": "C7"}, context=context)
        [call] = fake.calls_to("chat.postMessage")
    assert outcome.startswith("C1: digest posted (5 alerts")
    assert quiet == "C7: quiet window, nothing posted"
    assert call.args["channel"] == "C1"
    assert "4 firing" in str(call.args["blocks"])
    [event] = list(busy_hour.events(subject="channel:C1"))
    assert event.type == "digest.posted" and event.payload["stats"]["alerts"] == 5
    assert busy_hour.verify().ok


def test_model_narrative_is_labelled_and_a_failing_model_is_left_out(
        busy_hour: AuditStore) -> None:
    from bot.llm import build_chat_models
    from tests.fakes.openai_server import FakeOpenAI, Reply, Status

    with FakeOpenAI() as llm, FakeSlackAPI() as fake:
        settings = Settings(alert_channels=["C1"], llm_base_url=llm.base_url,
                            llm_model="fake-model", llm_max_retries=0)
        models = build_chat_models(settings)
        services = Services(settings=settings, store=busy_hour, runbooks=None,  # type: ignore[arg-type]
                            logs=None, models=models)  # type: ignore[arg-type]
        poster = SlackPoster(client=WebClient(base_url=fake.url, token=BOT_TOKEN),
                             pacer=ChannelPacer(interval_s=0))
        context = JobContext(settings=settings, services=services, slack=poster)
        llm.script(Reply("Checkout fired twice; one draft still waits."), Status(500))
        try:
            execute(name="digest", job_id="digest:C1", slot=END, params={"channel": "C1"},
                    context=context)
            execute(name="digest", job_id="digest:C1", slot=END, params={"channel": "C1"},
                    context=context)
        finally:
            for model in models:
                model.close()  # type: ignore[attr-defined]
        first, second = fake.calls_to("chat.postMessage")
        [request, _] = llm.chat_requests()
    assert NARRATIVE_LABEL in str(first.args["blocks"])
    assert "Checkout fired twice" in str(first.args["blocks"])
    assert '"alerts": 5' in request["messages"][1]["content"]  # the model sees the numbers
    assert NARRATIVE_LABEL not in str(second.args["blocks"])  # model down: numbers only
    assert "4 firing" in str(second.args["blocks"])


def test_scheduled_digest_posts_the_hour_that_ends_at_its_slot(busy_hour: AuditStore) -> None:
    import time_machine

    from bot.audit.schema import make_engine
    from bot.jobs import JOBS, build_scheduler, claims_of, start_scheduler, stop_scheduler

    url = busy_hour.engine.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, alert_channels=["C1"], digest_cron="0 * * * *")
    with FakeSlackAPI() as fake:
        poster = SlackPoster(client=WebClient(base_url=fake.url, token=BOT_TOKEN),
                             pacer=ChannelPacer(interval_s=0))
        services = Services(settings=settings, store=busy_hour, runbooks=None,  # type: ignore[arg-type]
                            logs=None, models=[])  # type: ignore[arg-type]
        context = JobContext(settings=settings, table={"digest": JOBS["digest"]},
                             services=services, slack=poster)
        for moment in (at(9, 30), at(10, 0, 5)):  # scheduled at 09:30, due again at 10:00
            with time_machine.travel(moment, tick=False):
                scheduler = build_scheduler(context=context, engine=make_engine(url),
                                            owner="bot-1")
                start_scheduler(scheduler=scheduler, context=context)
                try:
                    if moment == at(10, 0, 5):
                        [post] = fake.wait_for("chat.postMessage", timeout=10)
                        for _ in range(100):  # the run is recorded just after the post
                            [run] = claims_of(scheduler).recent(job_id="digest:C1")
                            if run.status != "running":
                                break
                            time.sleep(0.05)
                finally:
                    stop_scheduler(scheduler)
    assert post.args["channel"] == "C1"
    assert "1h ending 2026-11-28 10:00 UTC" in str(post.args["blocks"])
    assert "5 (4 firing, 1 resolved)" in str(post.args["blocks"])
    assert (run.slot, run.status, run.owner) == (END, "ok", "bot-1")
