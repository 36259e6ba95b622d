"""Time to build a postmortem draft for a 300-message incident thread.

    .venv/bin/python benchmarks/postmortem.py [--messages 300] [--runs 5]

A real WebClient reads the thread from the fake Slack API (cursor pages of 200), a real
OpenAI client talks to the fake model server (one call per section, scripted answers that
cite the timeline), and the draft is grounded and stored in a temporary SQLite audit store.
Measured twice: evidence-only (no model) and with the fake model. The fake model answers at
once, so the figures are Hotwash's own overhead (Slack reads, timeline assembly, prompt
rendering and budgeting, grounding, storage), not a real model's latency.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slack_sdk import WebClient  # noqa: E402

from bot.approval import Approvers, approve  # noqa: E402
from bot.audit.schema import make_engine, upgrade  # noqa: E402
from bot.audit.store import AuditStore  # noqa: E402
from bot.domain import Alert, Draft, DraftKind  # noqa: E402
from bot.llm import build_chat_models  # noqa: E402
from bot.postmortem import SECTIONS, draft_postmortem  # noqa: E402
from bot.services import Services  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply  # noqa: E402
from tests.fakes.slack_api import BOT_TOKEN, FakeSlackAPI  # noqa: E402

CHANNEL = "C0ALERTS"
T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC).timestamp()
PEOPLE = ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN"]
SAYINGS = [
    "Looking at checkout dashboards, 5xx at {n}% now",
    "Seeing HikariPool-1 - Connection is not available, request timed out after 30000ms",
    "Upstream 503s from checkout in the gateway logs, {n} per second",
    "DB CPU is fine, connections pinned at 20/20",
    "v2.14.0 went out at 13:55, that lines up",
    "Should we roll back or bump the pool? Rollback is safer",
    "Rolling back checkout to v2.13.2",
    "Customers report failed payments on the checkout page",
    "Status page updated",
    "Error rate down to {n}% after the rollback",
]


def thread(messages: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    root = f"{T0:.6f}"
    out: list[dict[str, object]] = [{
        "type": "message", "subtype": "bot_message", "bot_id": "B0ALERTMGR",
        "username": "Alertmanager", "ts": root, "thread_ts": root, "reply_count": messages - 1,
        "text": "[FIRING:1] CheckoutHighErrorRate checkout (shop critical)"}]
    for i in range(1, messages):
        ts = f"{T0 + i * 6:.6f}"
        roll = rng.random()
        if roll < 0.05:
            out.append({"type": "message", "subtype": "channel_join", "user": "U0NEW",
                        "text": "<@U0NEW> has joined the channel", "ts": ts, "thread_ts": root})
        elif roll < 0.10:
            out.append({"type": "message", "subtype": "bot_message", "bot_id": "B0JIRA",
                        "username": "Jira", "text": f"SHOP-{4000 + i} updated", "ts": ts,
                        "thread_ts": root})
        else:
            text = rng.choice(SAYINGS).format(n=rng.randint(1, 30))
            out.append({"type": "message", "user": rng.choice(PEOPLE), "text": text,
                        "ts": ts, "thread_ts": root})
    out[-1] = {"type": "message", "user": "U0ALICE", "ts": out[-1]["ts"], "thread_ts": root,
               "text": "Resolved: checkout back to normal; follow-up: raise pool, load test"}
    return out


def seed_store(store: AuditStore) -> int:
    alert = Alert(name="CheckoutHighErrorRate", fingerprint="fp-checkout", severity="critical",
                  labels={"service": "checkout", "namespace": "shop"}, channel=CHANNEL,
                  summary="checkout 5xx ratio above 5%",
                  starts_at=datetime.fromtimestamp(T0, UTC))
    incident, _ = store.open_incident(alert=alert, window_s=3600)
    store.set_incident_thread(incident_id=incident.id, channel=CHANNEL, thread_ts=f"{T0:.6f}")
    triage = store.save_draft(draft=Draft(
        kind=DraftKind.TRIAGE, incident_id=incident.id, model="evidence-only",
        content={"summary": "DB connection pool exhausted after deploy v2.14.0"},
        markdown="## Triage\nPool exhausted [E1]"))
    approve(store=store, draft_id=triage.id or 0, actor="U0ALICE",
            approvers=Approvers(user_ids=frozenset({"U0ALICE"})))
    return incident.id


def answers() -> list[Reply]:
    point = {"points": [{"text": "Checkout returned 5xx after deploy v2.14.0.",
                         "cites": ["T1", "T2", "D1"]}]}
    items = {"items": [{"action": "Raise the pool and load-test v2.14.0", "owner": "U0ALICE",
                        "due": None, "cites": ["T1"]}]}
    return [Reply(items if s.key == "action_items" else point) for s in SECTIONS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeSlackAPI() as slack_api, \
            FakeOpenAI() as llm:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        store = AuditStore(engine=engine)
        incident_id = seed_store(store)
        slack_api.messages[CHANNEL].extend(thread(args.messages))
        client = WebClient(base_url=slack_api.url, token=BOT_TOKEN)

        for label, settings in (
                ("evidence-only", Settings()),
                ("fake model", Settings(llm_base_url=llm.base_url, llm_model="fake-model",
                                        llm_max_retries=0))):
            models = build_chat_models(settings)
            services = Services(settings=settings, store=store, runbooks=None,  # type: ignore[arg-type]
                                logs=None, models=models)  # type: ignore[arg-type]
            times: list[float] = []
            draft = None
            pages_before = len(slack_api.calls_to("conversations.replies"))
            for _ in range(args.runs):
                if models:
                    llm.script(*answers())
                start = time.perf_counter()
                draft = draft_postmortem(incident_id=incident_id, services=services,
                                         slack=client)
                times.append(time.perf_counter() - start)
            for model in models:
                model.close()  # type: ignore[attr-defined]
            assert draft is not None
            pages = (len(slack_api.calls_to("conversations.replies")) - pages_before) / args.runs
            content = draft.content
            print(f"postmortem draft, {args.messages}-message thread, {label}: "
                  f"median {statistics.median(times) * 1000:.0f} ms, "
                  f"max {max(times) * 1000:.0f} ms over {args.runs} runs")
            print(f"  timeline entries {len(content['timeline'])}, noise filtered "
                  f"{content['slack']['noise_filtered']}, Slack pages per draft {pages:.0f}, "
                  f"model calls per draft {len(SECTIONS) if models else 0}, "
                  f"prompt tokens per draft {draft.prompt_tokens}, "
                  f"grounding {draft.grounding_score}")
            left = [n for n in draft.notes if "did not fit the prompt budget" in n]
            if left:
                print(f"  {left[0]}")
        store.close()


if __name__ == "__main__":
    main()
