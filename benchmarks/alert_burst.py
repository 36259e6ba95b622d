"""An alert storm in one channel: 500 messages over 60 s through the real HTTP app.

    .venv/bin/python benchmarks/alert_burst.py [--messages 500] [--duration 60] [--series 25]

``--duration`` compresses time (e.g. ``--duration 10``). Each message is a signed Slack
event for one of ``--series`` alert series (Alertmanager's Slack notifier format), posted
in one alert channel; 5% are "[RESOLVED]" notifications and 5% are re-deliveries of an
earlier event (Slack retries, same event_id). The fake Slack Web API answers 429 to any
chat.postMessage in that channel sooner than 0.9 s after the previous one (Slack allows
about one per second), so a 429 storm would show. Checked and printed: every delivery
persisted (one row per event_id), every message grouped into an incident, at most one
draft per incident, 429s received, the tightest gap between two posts, ack latency, and
resident memory sampled through the run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bot.audit.models import AlertRow, DraftRow, IncidentRow, Received  # noqa: E402
from tests.slack_harness import ALERT_CHANNEL, Harness, running  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def notifier_text(series: int, *, resolved: bool) -> str:
    state = "RESOLVED" if resolved else "FIRING:1"
    return (f"[{state}] Burst{series:02d}HighLatency\n"
            f"*Alert:* p99 latency above 2s on svc-{series:02d} - `warning`\n"
            f"*Details:*\n  • *alertname:* `Burst{series:02d}HighLatency`\n"
            f"  • *service:* `svc-{series:02d}`\n  • *severity:* `warning`\n")


def count(hw: Harness, model: type) -> int:
    with hw.store.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to spread over")
    parser.add_argument("--series", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trace-memory", action="store_true",
                        help="attribute memory growth by package with tracemalloc (slower)")
    args = parser.parse_args()
    if args.trace_memory:
        tracemalloc.start(8)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp), pace_s=1.0) as hw:
        hw.fake.post_interval_s = 0.9
        plan: list[tuple[str, dict[str, object]]] = []
        sent: list[tuple[str, dict[str, object]]] = []
        for n in range(args.messages):
            if sent and rng.random() < 0.05:
                plan.append(rng.choice(sent))  # a Slack retry of an earlier delivery
                continue
            series = min(int(rng.paretovariate(1.2)) - 1, args.series - 1)
            resolved = rng.random() < 0.05
            event = hw.message(notifier_text(series, resolved=resolved), subtype="bot_message",
                               bot_id="B0ALERTMANAGER", username="Alertmanager")
            item = (f"EvBURST{n:04d}", event)
            plan.append(item)
            sent.append(item)

        acks: list[float] = []
        statuses: Counter[int] = Counter()
        rss: list[tuple[int, float]] = [(0, rss_mb())]
        snapshots: list[tracemalloc.Snapshot] = []
        lock = threading.Lock()
        interval = args.duration / max(1, args.messages)
        started = time.monotonic()

        def deliver(index: int, event_id: str, event: dict[str, object]) -> None:
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            status = hw.event(event, event_id=event_id,
                              retry=1 if plan.index((event_id, event)) != index else None
                              ).status_code
            with lock:
                acks.append((time.perf_counter() - t0) * 1000)
                statuses[status] += 1
                if len(acks) % max(1, args.messages // 10) == 0:
                    rss.append((len(acks), rss_mb()))
                    if args.trace_memory and len(rss) == 2:
                        snapshots.append(tracemalloc.take_snapshot())

        with ThreadPoolExecutor(max_workers=8) as pool:
            for job in [pool.submit(deliver, i, eid, ev) for i, (eid, ev) in enumerate(plan)]:
                job.result()
        sent_s = time.monotonic() - started

        # Drain: every incident opened by a firing alert gets its draft (posting is paced).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with hw.store.read() as session:
                waiting = session.scalar(
                    select(func.count()).select_from(IncidentRow).where(
                        ~IncidentRow.id.in_(select(DraftRow.incident_id)),
                        IncidentRow.id.in_(select(AlertRow.incident_id)
                                           .where(AlertRow.status == "firing"))))
                waiting += session.scalar(select(func.count()).select_from(Received)
                                          .where(Received.status == "received")) or 0
            drafts_posted = sum(1 for c in hw.fake.calls_to("chat.update")
                                if "pending approval" in json.dumps(c.args.get("blocks")))
            if not waiting and drafts_posted >= count(hw, DraftRow):
                break
            time.sleep(0.25)
        drained_s = time.monotonic() - started
        rss.append((len(acks), rss_mb()))

        with hw.store.read() as session:
            per_incident = list(session.execute(
                select(DraftRow.incident_id, func.count()).group_by(DraftRow.incident_id)))
        posts = sorted(c.at for c in hw.fake.calls_to("chat.postMessage")
                       if c.args.get("channel") == ALERT_CHANNEL)
        gaps = [b - a for a, b in zip(posts, posts[1:], strict=False)]
        unique = len({eid for eid, _ in plan})
        print(f"alert burst: {len(plan)} deliveries ({unique} unique messages, "
              f"{len(plan) - unique} retries) in one channel over {sent_s:.1f} s "
              f"(target {args.duration:.0f} s), drained in {drained_s:.1f} s")
        print(f"  HTTP statuses: {dict(statuses)}")
        print(f"  persisted rows: {count(hw, Received)} (expected {unique}: one per event_id)")
        print(f"  alerts grouped: {count(hw, AlertRow)} into {count(hw, IncidentRow)} incidents")
        print(f"  drafts: {count(hw, DraftRow)}; max drafts per incident: "
              f"{max((n for _, n in per_incident), default=0)}")
        print(f"  chat.postMessage: {len(posts)}, 429s from the fake: {hw.fake.rate_limited}, "
              f"tightest gap between posts: {min(gaps, default=0):.2f} s")
        print(f"  ack latency: p50 {statistics.median(acks):.1f} ms, "
              f"p99 {sorted(acks)[int(0.99 * (len(acks) - 1))]:.1f} ms, max {max(acks):.1f} ms")
        print("  RSS (deliveries: MB): " + ", ".join(f"{n}: {mb:.0f}" for n, mb in rss))
        warm = rss[1][1] if len(rss) > 2 else rss[0][1]
        print(f"  RSS growth after the first 10% of the burst: {rss[-1][1] - warm:+.1f} MB")
        if snapshots:
            grown: Counter[str] = Counter()
            for stat in tracemalloc.take_snapshot().compare_to(snapshots[0], "traceback"):
                where = "other"
                for frame in stat.traceback:
                    name = frame.filename
                    for key in ("tests/fakes", "tests/slack_harness", "benchmarks/",
                                "/bot/", "slack_sdk", "slack_bolt", "sqlalchemy",
                                "prometheus_client"):
                        if key in name:
                            where = key.strip("/")
                            break
                    if where != "other":
                        break
                grown[where] += stat.size_diff
            print("  traced growth since 10% (KB, by first project frame): " + ", ".join(
                f"{k} {v / 1024:+.0f}" for k, v in grown.most_common()))


if __name__ == "__main__":
    main()
