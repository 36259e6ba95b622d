"""`hotwash demo`: walk the road on embedded defaults, printing every step.

The demo is a list of small steps (:data:`STEPS`), each a function of one shared
:class:`DemoRun`. To grow the demo (index runbooks, read logs, triage with the pipeline),
insert a step where it belongs; each step reads what earlier steps left on the run.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.alerts import parse_payload
from bot.approval import Approvers, NotAllowed, approve
from bot.audit import schema
from bot.audit.store import AuditStore
from bot.cli.context import out
from bot.cli.drafts import decision_panel, draft_table
from bot.domain import Alert, Decision, Draft, EvidencePart, Incident
from bot.ports import LogSource, RunbookIndex
from bot.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_ALERT = REPO_ROOT / "samples" / "alerts" / "checkout-5xx.json"
SAMPLE_RUNBOOKS = REPO_ROOT / "runbooks"
SAMPLE_LOGS = REPO_ROOT / "samples" / "logs"
MARKER = ".hotwash-demo"
DEMO_APPROVER = "U0DEMOLEAD"
DEMO_BYSTANDER = "U0BYSTANDER"


class DemoFailed(Exception):
    """A step found something wrong; the demo stops and exits 1."""


@dataclass
class DemoRun:
    """What the steps share. Steps fill these in as the road is walked."""

    data_dir: Path
    console: Console
    settings: Settings | None = None
    store: AuditStore | None = None
    approvers: Approvers = field(
        default_factory=lambda: Approvers(user_ids=frozenset({DEMO_APPROVER})))
    received_id: int | None = None
    alerts: list[Alert] = field(default_factory=list)
    incident: Incident | None = None
    runbooks: RunbookIndex | None = None
    logs: LogSource | None = None
    evidence: EvidencePart | None = None
    draft: Draft | None = None
    decision: Decision | None = None

    def need_store(self) -> AuditStore:
        if self.store is None:
            raise DemoFailed("no database yet: the migrate step must run first")
        return self.store


Step = tuple[str, Callable[[DemoRun], None]]


def prepare_data_dir(run: DemoRun) -> None:
    """Start from nothing: recreate the demo data dir (only ever one we created)."""
    if run.data_dir.exists():
        if not (run.data_dir / MARKER).exists():
            raise DemoFailed(f"{run.data_dir} exists and is not a demo dir; "
                             "refusing to delete it (pass --dir)")
        shutil.rmtree(run.data_dir)
    run.data_dir.mkdir(parents=True)
    (run.data_dir / MARKER).write_text("created by `hotwash demo`; recreated on each run\n")
    run.settings = load_settings(data_dir=run.data_dir,
                                 database_url=f"sqlite:///{run.data_dir / 'hotwash.db'}",
                                 approvers=[DEMO_APPROVER], auto_migrate=False,
                                 runbooks_dir=SAMPLE_RUNBOOKS, log_files=[SAMPLE_LOGS])
    run.console.print(f"data dir [b]{run.data_dir}[/b] (embedded SQLite and Chroma, "
                      "bundled runbooks and logs, no Slack, no model)")


def migrate(run: DemoRun) -> None:
    """Create the schema with the same migrations `hotwash db upgrade` runs."""
    assert run.settings is not None
    engine = schema.make_engine(run.settings.effective_database_url)
    schema.upgrade(engine)
    run.console.print(f"schema at revision [b]{schema.current_revision(engine)}[/b]")
    run.store = AuditStore(engine=engine)


def receive_alert(run: DemoRun) -> None:
    """Store the Alertmanager webhook verbatim, then parse it."""
    store = run.need_store()
    body = SAMPLE_ALERT.read_bytes()
    run.received_id = store.record_received(
        source="alertmanager", body=body, headers={"Content-Type": "application/json"},
        idempotency_key=f"demo:{SAMPLE_ALERT.name}")
    run.alerts = [alert.model_copy(update={"received_id": run.received_id})
                  for alert in parse_payload(body, content_type="application/json")]
    alert = run.alerts[0]
    run.console.print(f"payload #{run.received_id} ({len(body)} bytes) stored before parsing; "
                      f"parsed [b]{escape(alert.name)}[/b] {escape(str(alert.labels))}")


def open_incident(run: DemoRun) -> None:
    """Group the alert into an incident by its fingerprint."""
    store, alert = run.need_store(), run.alerts[0]
    run.incident, created = store.open_incident(alert=alert, window_s=3600)
    store.mark_received(received_id=alert.received_id or 0, status="processed")
    run.console.print(f"incident #{run.incident.id} "
                      f"{'opened' if created else 'joined'}: {escape(run.incident.title)}")


def index_runbooks(run: DemoRun) -> None:
    """Embed the bundled runbooks into embedded Chroma (offline model), incrementally."""
    from bot.retrieval import sync_and_open

    assert run.settings is not None
    began = time.perf_counter()
    index, stats = sync_and_open(settings=run.settings)
    run.runbooks = index
    run.console.print(f"{len(list(SAMPLE_RUNBOOKS.glob('**/*.md')))} runbooks from "
                      f"{SAMPLE_RUNBOOKS.name}/: {stats.embedded} embedded, "
                      f"{stats.unchanged} unchanged, {len(stats.problems)} skipped "
                      f"({time.perf_counter() - began:.1f} s)")


def match_runbook(run: DemoRun) -> None:
    """Rank runbooks for the alert; an empty list would mean "no runbook applies"."""
    assert run.runbooks is not None
    matches = run.runbooks.match(run.alerts[0], limit=3)
    if not matches:
        raise DemoFailed("no runbook matched the demo alert")
    table = Table("runbook", "score", "best section", title="Runbooks for the alert")
    for match in matches:
        table.add_row(match.id, f"{match.score:.2f}", match.section)
    run.console.print(table)


def read_logs(run: DemoRun) -> None:
    """Condense the bundled logs around the alert: templates, novelty, redaction."""
    from bot.cli.evidence import render_evidence
    from bot.logsource import build_log_source

    assert run.settings is not None
    run.logs = build_log_source(run.settings)
    run.evidence = run.logs.collect(run.alerts[0])
    render_evidence(run.evidence, source=run.logs.name, console=run.console)
    if not any(item.is_new for item in run.evidence.items):
        raise DemoFailed("the logs showed no new error template")


def triage_draft(run: DemoRun) -> None:
    """Draft the triage with no model configured (evidence-only drafter); store it pending."""
    from bot.cli.triage import show_draft
    from bot.pipeline import triage
    from bot.services import Services

    assert run.settings is not None and run.runbooks is not None and run.logs is not None
    services = Services(settings=run.settings, store=run.need_store(), runbooks=run.runbooks,
                        logs=run.logs, models=[])
    run.draft = triage(alert=run.alerts[0], services=services, incident=run.incident)
    if run.draft.id is None:
        raise DemoFailed("the draft was not stored")
    show_draft(run.draft, title=f"Triage draft #{run.draft.id}", console=run.console)
    run.console.print(draft_table([run.draft], title="Pending drafts"))


def refused_attempt(run: DemoRun) -> None:
    """Someone who is not an approver tries: refused, and the refusal is audited."""
    store, draft = run.need_store(), run.draft
    assert draft is not None and draft.id is not None
    try:
        approve(store=store, draft_id=draft.id, actor=DEMO_BYSTANDER, approvers=run.approvers,
                via="demo")
    except NotAllowed as exc:
        run.console.print(f"[yellow]refused:[/yellow] {escape(str(exc))}")
        return
    raise DemoFailed(f"{DEMO_BYSTANDER} was allowed to approve")


def approve_draft(run: DemoRun) -> None:
    """The approver edits one line and approves: the diff and both steps are audited."""
    store, draft = run.need_store(), run.draft
    assert draft is not None and draft.id is not None
    edited = draft.markdown.rstrip() + (
        "\n\n**On-call decision:** roll back v2.14.0 now; size the pool before redeploying.\n")
    run.decision = approve(store=store, draft_id=draft.id, actor=DEMO_APPROVER,
                           approvers=run.approvers, edited_markdown=edited, via="demo")
    again = approve(store=store, draft_id=draft.id, actor=DEMO_APPROVER,
                    approvers=run.approvers, edited_markdown=edited, via="demo")
    if again != run.decision:
        raise DemoFailed("approving twice produced a second decision")
    run.console.print(decision_panel(run.decision))
    run.console.print("approving again returned the same decision (idempotent)")


def verify_chain(run: DemoRun) -> None:
    """Walk the hash chain, as `hotwash audit verify` does."""
    store = run.need_store()
    table = Table("#", "event", "subject", "hash", title="Audit log")
    for event in store.events():
        table.add_row(str(event.seq), event.type, event.subject, event.hash[:16] + "…")
    run.console.print(table)
    report = store.verify()
    if not report.ok:
        raise DemoFailed(f"audit chain broken at event #{report.bad_seq}: {report.reason}")
    run.console.print(f"[green]audit chain OK[/green]: {report.events} events, "
                      f"head {report.head_hash[:16]}…")


STEPS: list[Step] = [
    ("Set up a fresh demo data dir", prepare_data_dir),
    ("Migrate the embedded SQLite database", migrate),
    ("Receive the CheckoutHighErrorRate alert", receive_alert),
    ("Group it into an incident", open_incident),
    ("Index the bundled runbooks into Chroma", index_runbooks),
    ("Match runbooks to the alert", match_runbook),
    ("Read and condense the bundled logs", read_logs),
    ("Draft the triage and store it pending", triage_draft),
    ("A non-approver tries to approve", refused_attempt),
    ("An approver edits and approves", approve_draft),
    ("Verify the audit chain", verify_chain),
]


def run_demo(*, data_dir: Path, console: Console, steps: list[Step] | None = None) -> DemoRun:
    """Run ``steps`` in order on a fresh ``data_dir``; raises DemoFailed on a bad step."""
    run = DemoRun(data_dir=data_dir, console=console)
    chosen = STEPS if steps is None else steps
    try:
        for number, (title, step) in enumerate(chosen, start=1):
            console.rule(f"[b]{number}/{len(chosen)}[/b] {title}", align="left")
            step(run)
    finally:
        if run.store is not None:
            run.store.close()
    return run


def demo(
    data_dir: Annotated[Path, typer.Option("--dir", help="Demo data dir (recreated).")] = (
        Path("data/demo")),
) -> None:
    """Walk an alert down the whole road: store, runbooks, logs, triage, approval, audit."""
    try:
        run_demo(data_dir=data_dir, console=out)
    except DemoFailed as exc:
        out.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from None
    out.rule("[green]done[/green]")
    out.print(f"Inspect it: HOTWASH_DATA_DIR={data_dir} hotwash drafts list --status approved; "
              f"HOTWASH_DATA_DIR={data_dir} hotwash audit verify", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `demo` to the root app."""
    app.command("demo")(demo)
