"""`hotwash postmortem --incident ID` drafts a postmortem (stored pending);
`hotwash postmortem export ID [--out FILE]` writes the approved version as Markdown.

Slack is read for the incident thread when ``HOTWASH_SLACK_BOT_TOKEN`` is set; otherwise
the draft is built from what the audit store holds and says that human messages are missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.context import err, out, settings_from
from bot.cli.db import store_from

postmortem_app = typer.Typer(
    help="Draft an incident postmortem, or export an approved one.",
    invoke_without_command=True,
)


@postmortem_app.callback()
def draft(
    ctx: typer.Context,
    incident: Annotated[int | None, typer.Option("--incident", "-i",
                                                 help="Incident id to draft for.")] = None,
) -> None:
    """Draft the postmortem of an incident (stored pending, like a triage draft)."""
    if ctx.invoked_subcommand is not None:
        return
    if incident is None:
        err.print("usage: hotwash postmortem --incident ID | hotwash postmortem export ID")
        raise typer.Exit(2)
    from bot.postmortem import draft_postmortem
    from bot.services import Services

    settings = settings_from(ctx)
    with store_from(ctx) as store:
        try:
            store.get_incident(incident_id=incident)
        except KeyError:
            err.print(f"error: no incident {incident}")
            raise typer.Exit(1) from None
        from bot.llm import build_chat_models

        models = build_chat_models(settings)
        slack = None
        if settings.slack_bot_token is not None:
            from bot.slack.poster import build_web_client

            slack = build_web_client(settings)
        # Only the store and the models are used here; retrieval and logs stay unbuilt.
        services = Services(settings=settings, store=store, runbooks=None,  # type: ignore[arg-type]
                            logs=None, models=models)  # type: ignore[arg-type]
        try:
            result = draft_postmortem(incident_id=incident, services=services, slack=slack)
        finally:
            for model in models:
                close = getattr(model, "close", None)
                if callable(close):
                    close()
    out.print(result.markdown, markup=False, highlight=False, soft_wrap=True)
    err.print(f"postmortem draft #{result.id} stored pending ({result.model}); approve with "
              f"`hotwash drafts approve {result.id}`, then `hotwash postmortem export "
              f"{result.id}`", markup=False, highlight=False)


@postmortem_app.command("export")
def export(
    ctx: typer.Context,
    draft_id: Annotated[int, typer.Argument(help="Postmortem draft id.")],
    out_file: Annotated[Path | None, typer.Option("--out", "-o",
                                                  help="Write here instead of stdout.")] = None,
    post: Annotated[bool, typer.Option("--post", help="Also post it in the incident's "
                                                       "Slack thread.")] = False,
) -> None:
    """Export an approved postmortem as Markdown (with the approvers' edits)."""
    from bot.postmortem import NotApproved, export_markdown, post_export

    settings = settings_from(ctx)
    with store_from(ctx) as store:
        try:
            markdown = export_markdown(store=store, draft_id=draft_id)
        except KeyError:
            err.print(f"error: no draft {draft_id}")
            raise typer.Exit(1) from None
        except NotApproved as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        if post:
            if settings.slack_bot_token is None:
                err.print("error: --post needs HOTWASH_SLACK_BOT_TOKEN")
                raise typer.Exit(2)
            from bot.slack.poster import SlackPoster, build_web_client

            poster = SlackPoster(client=build_web_client(settings))
            try:
                ts = post_export(store=store, poster=poster, draft_id=draft_id)
            except NotApproved as exc:
                err.print(f"error: {exc}", markup=False, highlight=False)
                raise typer.Exit(1) from None
            err.print(f"posted to Slack (ts {ts})", markup=False, highlight=False)
    if out_file is None:
        out.print(markdown, markup=False, highlight=False, soft_wrap=True)
        return
    out_file.write_text(markdown, encoding="utf-8")
    err.print(f"wrote {out_file}", markup=False, highlight=False)


@postmortem_app.command("edits")
def edits(ctx: typer.Context) -> None:
    """How much approvers changed each section of approved postmortems (from the audit log)."""
    from rich.table import Table

    from bot.postmortem import edit_stats

    with store_from(ctx) as store:
        stats = edit_stats(store=store)
    table = Table(title="Human edits per postmortem section")
    for name in ("section", "approved drafts", "edited in", "mean lines changed"):
        table.add_column(name)
    for row in stats:
        table.add_row(row.section, str(row.drafts), str(row.edited), f"{row.mean_lines:.2f}")
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add `postmortem` to the root app."""
    app.add_typer(postmortem_app, name="postmortem")
