"""`hotwash drafts list | show | approve | reject`.

Who may act from the terminal: the CLI trusts whoever can reach the database and the
configuration (an operator), but still applies the approver allow-list: ``--as USER`` must be
one of ``HOTWASH_APPROVERS``. Members of ``HOTWASH_APPROVER_GROUP`` act from Slack (the CLI
has no Slack membership lookup) or are listed explicitly. Every decision records
``via=cli:<login>``, the operating-system login that ran the command, next to ``--as``.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from bot.approval import ApprovalError, Approvers, approve, reject
from bot.audit.store import AuditStore
from bot.cli.context import err, out, settings_from
from bot.cli.db import store_from
from bot.domain import Decision, Draft, DraftStatus

drafts_app = typer.Typer(help="List, inspect, approve and reject drafts.",
                         no_args_is_help=True)


def cli_via() -> str:
    """``cli:<login>`` recorded on CLI decisions."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (e.g. a bare container user)
        login = "unknown"
    return f"cli:{login}"


def draft_table(drafts: list[Draft], *, title: str = "Drafts", width: int | None = None
                ) -> Table:
    """One row per draft: the first line of its text tells which is which. On a terminal
    narrower than 110 columns (``width``, default the console's) the creation time and model
    are left out so the first line stays readable."""
    wide = (width or out.width) >= 110
    table = Table(title=title)
    for name in ("id", "status", "kind", "incident") + (("created (UTC)", "model") if wide
                                                        else ()):
        table.add_column(name, no_wrap=True)
    table.add_column("first line", overflow="ellipsis", no_wrap=True, ratio=1)
    for draft in drafts:
        first = next((line.strip("# ").strip() for line in draft.markdown.splitlines()
                      if line.strip()), "")
        extra = (f"{draft.created_at:%Y-%m-%d %H:%M}", draft.model) if wide else ()
        table.add_row(str(draft.id), draft.status.value, draft.kind.value,
                      str(draft.incident_id or "-"), *map(escape, extra), escape(first))
    return table


def decision_panel(decision: Decision) -> Panel:
    """A decision with its reason and diff (user text escaped: no rich markup injection)."""
    lines = [f"[b]{decision.action.value}[/b] by {escape(decision.actor)} at "
             f"{decision.at:%Y-%m-%d %H:%M:%S}Z"]
    if decision.reason:
        lines.append(f"reason: {escape(decision.reason)}")
    if decision.diff:
        lines.append("edit (unified diff against the draft):")
        lines.append(escape(decision.diff.rstrip("\n")))
    return Panel("\n".join(lines), title=f"decision on draft {decision.draft_id}",
                 expand=False)


def draft_panel(store: AuditStore, draft: Draft) -> Panel:
    assert draft.id is not None
    meta = Table.grid(padding=(0, 2))
    meta.add_row("kind / status", f"{draft.kind.value} / {draft.status.value}")
    meta.add_row("incident", str(draft.incident_id or "-"))
    meta.add_row("model", escape(draft.model))
    meta.add_row("prompt", escape(f"{draft.prompt_template or '-'} {draft.prompt_hash or ''}"
                                  .strip()))
    meta.add_row("params", escape(str(draft.params or {})))
    meta.add_row("tokens", f"{draft.prompt_tokens} prompt + {draft.completion_tokens} "
                           f"completion, ${draft.cost_usd:.4f}, {draft.latency_ms:.0f} ms")
    meta.add_row("evidence", escape(", ".join(draft.evidence_refs)) or "-")
    meta.add_row("grounding", "-" if draft.grounding_score is None
                 else f"{draft.grounding_score:.2f}")
    if draft.notes:
        meta.add_row("notes", escape("; ".join(draft.notes)))
    replaced = store.superseded_by(draft_id=draft.id)
    if replaced:
        meta.add_row("superseded by", f"draft {replaced}")
    return Panel(meta, title=f"draft {draft.id}", expand=False)


@drafts_app.command("list")
def list_drafts(
    ctx: typer.Context,
    status: Annotated[DraftStatus | None,
                      typer.Option("--status", help="Only this status.")] = None,
    limit: int = typer.Option(50, "--limit", min=1, help="Newest N drafts."),
) -> None:
    """List drafts, newest first."""
    with store_from(ctx) as store:
        drafts = store.list_drafts(status=status, limit=limit)
    if not drafts:
        out.print("no drafts" + (f" with status {status.value}" if status else ""))
        return
    out.print(draft_table(drafts))


@drafts_app.command("show")
def show(ctx: typer.Context, draft_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Show one draft: metadata, text, decision and its audit events."""
    with store_from(ctx) as store:
        try:
            draft = store.get_draft(draft_id=draft_id)
        except KeyError:
            err.print(f"error: no draft {draft_id}", highlight=False)
            raise typer.Exit(1) from None
        out.print(draft_panel(store, draft))
        out.print(Markdown(draft.markdown))
        decision = store.get_decision(draft_id=draft_id)
        if decision is not None:
            out.print(decision_panel(decision))
        events = Table("#", "at", "event", title="audit events")
        for event in store.events(subject=f"draft:{draft_id}"):
            events.add_row(str(event.seq), event.at, event.type)
        out.print(events)


def _act(ctx: typer.Context, *, draft_id: int, actor: str, edit: Path | None,
         reason: str | None) -> None:
    settings = settings_from(ctx)
    approvers = Approvers(user_ids=frozenset(settings.approvers))
    edited = None
    if edit is not None:
        edited = sys.stdin.read() if str(edit) == "-" else edit.read_text(encoding="utf-8")
    with store_from(ctx) as store:
        try:
            if reason is None:
                decision = approve(store=store, draft_id=draft_id, actor=actor,
                                   approvers=approvers, edited_markdown=edited, via=cli_via())
            else:
                decision = reject(store=store, draft_id=draft_id, actor=actor, reason=reason,
                                  approvers=approvers, via=cli_via())
        except ApprovalError as exc:
            err.print(f"refused: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
    out.print(decision_panel(decision))


@drafts_app.command("approve")
def approve_cmd(
    ctx: typer.Context,
    draft_id: int = typer.Argument(..., metavar="ID"),
    actor: str = typer.Option(..., "--as", help="Approver user ID (must be in "
                              "HOTWASH_APPROVERS)."),
    edit: Annotated[Path | None, typer.Option(
        "--edit", help="Approve this edited text instead (a file, or - for stdin); "
        "the diff is stored.")] = None,
) -> None:
    """Approve a pending draft (optionally with an edited text)."""
    _act(ctx, draft_id=draft_id, actor=actor, edit=edit, reason=None)


@drafts_app.command("reject")
def reject_cmd(
    ctx: typer.Context,
    draft_id: int = typer.Argument(..., metavar="ID"),
    actor: str = typer.Option(..., "--as", help="Approver user ID (must be in "
                              "HOTWASH_APPROVERS)."),
    reason: str = typer.Option(..., "--reason", help="Why the draft is rejected."),
) -> None:
    """Reject a pending draft with a reason."""
    _act(ctx, draft_id=draft_id, actor=actor, edit=None, reason=reason)


def register(app: typer.Typer) -> None:
    """Add `drafts` to the root app."""
    app.add_typer(drafts_app, name="drafts")
