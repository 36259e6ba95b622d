"""Audit store figures: append throughput, verify throughput, approval latency.

    .venv/bin/python benchmarks/audit_chain.py [--events 2000] [--postgres URL]

Appends N audited writes (raw payload + event, one transaction each, as the webhook path
does), then times `verify` (chain walk + record cross-checks) and N/10 approvals. Runs on a
temporary SQLite file; with --postgres ADMIN_URL (or HOTWASH_TEST_POSTGRES_URL) also on a
throwaway PostgreSQL database that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, make_url, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bot.approval import Approvers, approve  # noqa: E402
from bot.audit.schema import make_engine, upgrade  # noqa: E402
from bot.audit.store import AuditStore  # noqa: E402
from bot.domain import Draft, DraftKind  # noqa: E402


def measure(url: str, events: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    store = AuditStore(engine=engine)
    try:
        body = b'{"alerts": [{"labels": {"alertname": "CheckoutHighErrorRate"}}]}' * 20
        start = time.perf_counter()
        for i in range(events):
            store.record_received(source="alertmanager", body=body, headers={},
                                  idempotency_key=f"bench-{i}")
        append_s = time.perf_counter() - start
        approvers = Approvers(user_ids=frozenset({"U1"}))
        latencies = []
        for _ in range(max(events // 10, 1)):
            draft = store.save_draft(draft=Draft(kind=DraftKind.TRIAGE, content={"a": 1},
                                                 markdown="## triage\n", model="bench"))
            assert draft.id is not None
            t0 = time.perf_counter()
            approve(store=store, draft_id=draft.id, actor="U1", approvers=approvers)
            latencies.append((time.perf_counter() - t0) * 1000)
        start = time.perf_counter()
        report = store.verify()
        verify_s = time.perf_counter() - start
        assert report.ok, report
        backend = make_url(url).get_backend_name()
        print(f"{backend:10s} append {events / append_s:7.0f} writes/s | verify "
              f"{report.events} events in {verify_s:.2f}s ({report.events / verify_s:.0f}/s) | "
              f"approve p50 {statistics.median(latencies):.1f} ms, "
              f"max {max(latencies):.1f} ms")
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("HOTWASH_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(f"sqlite:///{tmp}/bench.db", args.events)
    if not args.postgres:
        print("postgres   skipped (no --postgres / HOTWASH_TEST_POSTGRES_URL)")
        return
    name = f"hotwash_bench_{secrets.token_hex(4)}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        measure(make_url(args.postgres).set(database=name).render_as_string(
            hide_password=False), args.events)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
