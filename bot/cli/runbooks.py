"""`hotwash runbooks index|search|match`: build the runbook index and ask it questions.

Heavy imports (chromadb, onnxruntime) happen inside the commands, so `hotwash --help`
and every other command start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bot.cli.context import err, out, settings_from

if TYPE_CHECKING:
    from bot.domain import Alert
    from bot.retrieval import HybridRunbookIndex
    from bot.runbooks import IndexStats, Progress
    from bot.settings import Settings

runbooks_app = typer.Typer(help="Index runbooks and match them to alerts.", no_args_is_help=True)

RUNBOOKS_OPT = typer.Option(None, "--runbooks", help="Runbooks directory (default: settings).")
INDEX_DIR_OPT = typer.Option(None, "--index-dir", help="Embedded Chroma directory to use.")
DIR_ARG = typer.Argument(None, help="Runbooks directory (default: settings).")


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress | None]:
    """A rich progress bar on stderr for long runs; a no-op when stderr is not a terminal."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("embedding runbooks"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), console=err, transient=True) as bar:
        task = bar.add_task("", total=None)

        def report(done: int, total: int, current: str) -> None:
            bar.update(task, completed=done, total=total, description=current)

        yield report


def _report_problems(stats: IndexStats) -> None:
    for problem in stats.problems:
        err.print(f"skipped {problem.path}: {problem.error}", highlight=False, markup=False,
                  soft_wrap=True)


def _open(settings: Settings, runbooks_dir: Path | None,
          index_dir: Path | None) -> HybridRunbookIndex:
    """The index for ``runbooks_dir``, brought up to date first (incrementally)."""
    from bot.embeddings import EmbeddingError
    from bot.retrieval import sync_and_open

    try:
        with _progress_bar(err.is_terminal) as progress:
            index, stats = sync_and_open(settings=settings, runbooks_dir=runbooks_dir,
                                         index_dir=index_dir, progress=progress)
    except EmbeddingError as exc:
        err.print(f"embedding model unavailable: {exc}", highlight=False, markup=False,
                  soft_wrap=True)
        raise typer.Exit(1) from None
    _report_problems(stats)
    return index


@runbooks_app.command("index")
def index(
    ctx: typer.Context,
    directory: Path | None = DIR_ARG,
    index_dir: Path | None = INDEX_DIR_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the stats as JSON."),
) -> None:
    """Index Markdown runbooks into Chroma; only new or changed files are embedded."""
    from bot.embeddings import EmbeddingError
    from bot.runbooks import index_runbooks

    settings = settings_from(ctx)
    target = directory or settings.runbooks_dir
    if not target.is_dir():
        err.print(f"runbooks directory not found: {target}", highlight=False, markup=False,
                  soft_wrap=True)
        raise typer.Exit(2)
    try:
        with _progress_bar(err.is_terminal) as progress:
            stats = index_runbooks(settings, directory=target, index_dir=index_dir,
                                   progress=progress)
    except EmbeddingError as exc:
        err.print(f"embedding model unavailable: {exc}", highlight=False, markup=False,
                  soft_wrap=True)
        raise typer.Exit(1) from None
    _report_problems(stats)
    if as_json:
        out.print_json(json.dumps(stats.as_dict()))
        return
    out.print(
        f"{stats.files} runbook files in {target}: {stats.embedded} embedded "
        f"({stats.chunks} chunks), {stats.unchanged} unchanged, {stats.removed} removed, "
        f"{len(stats.problems)} skipped, {stats.seconds:.1f} s",
        highlight=False,
    )


@runbooks_app.command("search")
def search(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="What is happening, in words or an alert name."),
    limit: int = typer.Option(3, "--limit", "-n", min=1, max=20),
    runbooks_dir: Path | None = RUNBOOKS_OPT,
    index_dir: Path | None = INDEX_DIR_OPT,
) -> None:
    """Show the runbooks that match TEXT, best first, with their best section."""
    settings = settings_from(ctx)
    found = _open(settings, runbooks_dir, index_dir).match(_query_of(text), limit=limit)
    if not found:
        out.print("No runbook covers this (the evidence was too weak to suggest one).")
        return
    for rank, match in enumerate(found, 1):
        out.print(f"[bold]{rank}. {match.title}[/bold]  ({match.id})  score {match.score:.2f}")
        out.print(f"   section: {match.section}", highlight=False, markup=False)
        snippet = " ".join(match.text.split())[:200]
        if snippet:
            out.print(f"   {snippet}", highlight=False, markup=False)


@runbooks_app.command("match")
def match(
    ctx: typer.Context,
    jsonl: bool = typer.Option(False, "--jsonl", help="One payload per input line."),
    limit: int = typer.Option(3, "--limit", "-n", min=1, max=20),
    runbooks_dir: Path | None = RUNBOOKS_OPT,
    index_dir: Path | None = INDEX_DIR_OPT,
) -> None:
    """Read a payload (Alertmanager v4 body, Slack message event, or plain text) from stdin
    and print {"matches": [{"id", "score", "title", "section"}]}; [] means no runbook applies."""
    settings = settings_from(ctx)
    runbook_index = _open(settings, runbooks_dir, index_dir)
    if not jsonl:
        sys.stdout.write(json.dumps(_match_one(runbook_index, sys.stdin.read(), limit)) + "\n")
        return
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(_match_one(runbook_index, line, limit)) + "\n")
            sys.stdout.flush()


def _match_one(index: HybridRunbookIndex, payload: str, limit: int) -> dict[str, Any]:
    from bot.retrieval import ranked

    try:
        query = _query_of(payload)
    except ValueError as exc:
        return {"matches": [], "error": str(exc)}
    return {"matches": ranked(index.match(query, limit=limit))}


def _query_of(payload: str) -> Alert | str:
    """One query from any payload: the first alert of a webhook body (common labels are
    merged into each alert), the text of a Slack message, or the text itself."""
    from bot.alerts import PayloadError, parse_payload

    stripped = payload.strip()
    if not stripped:
        raise ValueError("empty payload")
    if stripped[0] in '{["':
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError as exc:
            # "{..." can only be a broken JSON body; "[FIRING:1] ..." is a pasted notification.
            if stripped[0] == "{":
                raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
            decoded = None
        if isinstance(decoded, str):  # a JSON-encoded message line
            return decoded
    try:
        alerts = parse_payload(stripped)
    except PayloadError as exc:
        if stripped[0] in "{[":
            raise ValueError(str(exc)) from None
        return stripped
    return alerts[0]


def register(app: typer.Typer) -> None:
    """Add `runbooks` to the root app."""
    app.add_typer(runbooks_app, name="runbooks")
