"""Runbooks on disk: Markdown with optional YAML front matter, chunked by headings.

A runbook's id is its path relative to the runbooks directory without ``.md``
(``kubernetes/KubePodCrashLooping``). Each runbook becomes one *overview* chunk (title,
names, tags and the opening text: what the runbook is about) plus one chunk per section,
each carrying its section path ("Diagnosis > Slow disk"). Indexing is incremental by a
sha256 of the file's bytes: unchanged files are never re-embedded, deleted ones are removed.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from bot.adapters.chroma import ChromaRunbookStore
    from bot.embeddings import Embedder
    from bot.settings import Settings

SECTION_CHARS = 900  # ~220 tokens: a section chunk stays inside the model's 256-token window
OVERVIEW_CHARS = SECTION_CHARS
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)
_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
_K8S = re.compile(r"[Kk]8[Ss]")  # "K8sVersionSkew": a numeronym CamelCase would cut apart
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_LINK = re.compile(r"""(?:\{\{<\s*ref\s+"([^"]+?)\.md"\s*>\}\}|\]\(([^)\s]+?)\.md\))""")


class RunbookError(ValueError):
    """A runbook file cannot be read (not UTF-8, malformed front matter)."""


@dataclass(frozen=True)
class RunbookChunk:
    """One piece of a runbook that is embedded and searched."""

    id: str
    runbook_id: str
    section: str
    text: str
    kind: str = "section"  # "overview" or "section"

    def embed_text(self, title: str) -> str:
        """What the model sees: the runbook title and section path give a bare list context."""
        if self.kind == "overview":
            return self.text
        return f"{title} - {self.section}\n{self.text}"


@dataclass(frozen=True)
class Runbook:
    """A parsed runbook file."""

    id: str
    title: str
    content_hash: str
    names: tuple[str, ...]  # file stem, title, alerts from front matter, top heading
    aliases: tuple[str, ...] = ()  # the names its author gave it: stem, title, alerts
    tags: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    links: tuple[str, ...] = ()  # ids of runbooks this one points to
    chunks: tuple[RunbookChunk, ...] = ()
    body_chars: int = 0


@dataclass(frozen=True)
class RunbookProblem:
    """A file that was skipped, and why."""

    path: str
    error: str


@dataclass
class IndexStats:
    """What one indexing run did."""

    files: int = 0
    embedded: int = 0  # runbooks (re-)embedded
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0  # chunks embedded in this run
    problems: list[RunbookProblem] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "embedded": self.embedded, "unchanged": self.unchanged,
            "removed": self.removed, "chunks": self.chunks, "seconds": round(self.seconds, 3),
            "problems": [{"path": p.path, "error": p.error} for p in self.problems],
        }


def words(name: str) -> list[str]:
    """Split an identifier into lowercase words: ``KubePodCrashLooping`` -> kube pod crash looping,
    ``node_filesystem-full`` -> node filesystem full."""
    out: list[str] = []
    for part in re.split(r"[^A-Za-z0-9]+", _K8S.sub("Kube", name)):
        out.extend(m.lower() for m in _CAMEL.findall(part))
    return out


def humanize(name: str) -> str:
    return " ".join(words(name))


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if v is not None)
    return (str(value),)


def parse_runbook(*, runbook_id: str, data: bytes) -> Runbook:
    """Parse one file's bytes. Raises RunbookError for non-UTF-8 text or bad front matter."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RunbookError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    meta: dict[str, Any] = {}
    body = text
    match = _FRONT_MATTER.match(text)
    if match:
        try:
            loaded = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
            raise RunbookError(f"malformed front matter: {first}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise RunbookError("malformed front matter: expected a mapping of keys")
        meta = loaded or {}
        body = text[match.end():]
    elif text.startswith("---\n"):
        raise RunbookError("malformed front matter: no closing '---'")

    stem = runbook_id.rsplit("/", 1)[-1]
    sections = _sections(body)
    heading = next((h1 for h1, _, _ in sections if h1), "")
    title = str(meta.get("title") or "").strip() or heading or humanize(stem)
    alerts = _as_tuple(meta.get("alerts") or meta.get("alert"))
    names = tuple(dict.fromkeys(n for n in (stem, title, *alerts, heading) if n))
    tags = _as_tuple(meta.get("tags"))
    services = _as_tuple(meta.get("services") or meta.get("service"))
    base = runbook_id.rsplit("/", 1)[0] if "/" in runbook_id else ""
    links = tuple(dict.fromkeys(_link_target(base, m) for m in _LINK.findall(body)))

    chunks: list[RunbookChunk] = []
    body_text = "\n".join(t for _, _, t in sections).strip()
    overview = [title]
    overview += [humanize(n) for n in names if humanize(n) != title.lower()]
    if tags:
        overview.append("tags: " + ", ".join(tags))
    if services:
        overview.append("services: " + ", ".join(services))
    if meta.get("summary") or meta.get("description"):
        overview.append(str(meta.get("summary") or meta.get("description")))
    pieces = list(_pieces(sections, heading))
    # The opening section (usually "Meaning") is folded into the overview chunk rather than
    # embedded twice: it is what says what the runbook is about.
    first_section = "Overview"
    if pieces:
        first_section, opening = pieces.pop(0)
        overview.append(_clean(opening)[:OVERVIEW_CHARS])
    chunks.append(RunbookChunk(id=f"{runbook_id}#0", runbook_id=runbook_id,
                               section=first_section,
                               text="\n".join(o for o in overview if o), kind="overview"))
    for section, piece in pieces:
        chunks.append(RunbookChunk(id=f"{runbook_id}#{len(chunks)}", runbook_id=runbook_id,
                                   section=section, text=piece))
    return Runbook(
        id=runbook_id, title=title, content_hash=content_hash(data), names=names, tags=tags,
        aliases=tuple(dict.fromkeys(n for n in (stem, title, *alerts) if n)),
        services=services, links=tuple(lnk for lnk in links if lnk and lnk != runbook_id),
        chunks=tuple(chunks), body_chars=len(_clean(body_text)),
    )


def _link_target(base: str, groups: tuple[str, str]) -> str:
    target = (groups[0] or groups[1]).strip()
    if "://" in target:
        return ""
    parts = [p for p in (base.split("/") if base else []) if p]
    for piece in target.split("/"):
        if piece in ("", "."):
            continue
        if piece == "..":
            if parts:
                parts.pop()
        else:
            parts.append(piece)
    return "/".join(parts)


def _clean(text: str) -> str:
    return re.sub(r"\{\{<.*?>\}\}", "", text)


def _sections(body: str) -> list[tuple[str, str, str]]:
    """(top heading, heading path, text) per heading section, code fences respected."""
    from langchain_text_splitters import MarkdownHeaderTextSplitter

    splitter = MarkdownHeaderTextSplitter(headers_to_split_on=_HEADERS, strip_headers=True)
    out: list[tuple[str, str, str]] = []
    for doc in splitter.split_text(body):
        path = " > ".join(str(doc.metadata[k]) for _, k in _HEADERS if k in doc.metadata)
        out.append((str(doc.metadata.get("h1", "")), path, doc.page_content.strip()))
    return out


def _pieces(sections: list[tuple[str, str, str]], heading: str) -> Iterable[tuple[str, str]]:
    """Section chunks, the runbook's own top heading dropped from the path, long ones split."""
    for _, path, text in sections:
        if not text.strip():
            continue
        section = path
        if heading and (path == heading or path.startswith(heading + " > ")):
            section = path[len(heading) + 3:] if path != heading else "Overview"
        section = section or "Overview"
        for piece in _split(text):
            yield section, piece


def _split(text: str) -> list[str]:
    if len(text) <= SECTION_CHARS:
        return [text]
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=SECTION_CHARS, chunk_overlap=100)
    return [p for p in splitter.split_text(text) if p.strip()]


def scan(directory: Path) -> tuple[list[tuple[str, Path]], list[RunbookProblem]]:
    """Markdown files under ``directory`` as (runbook id, path), sorted; Hugo ``_index.md``
    section pages and hidden folders are left out."""
    problems: list[RunbookProblem] = []
    if not directory.is_dir():
        return [], [RunbookProblem(str(directory), "runbooks directory not found")]
    found: list[tuple[str, Path]] = []
    for path in sorted(directory.rglob("*.md")):
        rel = path.relative_to(directory)
        if any(p.startswith(".") for p in rel.parts) or path.name.startswith("_"):
            continue
        if path.name.upper() in {"README.MD", "LICENSE.MD"} and rel.parent == Path("."):
            continue
        if not path.is_file():
            continue
        found.append((rel.with_suffix("").as_posix(), path))
    return found, problems


def load_runbooks(directory: Path) -> tuple[list[Runbook], list[RunbookProblem]]:
    """Parse every runbook under ``directory``; bad files come back as problems."""
    files, problems = scan(directory)
    runbooks: list[Runbook] = []
    for runbook_id, path in files:
        try:
            runbooks.append(parse_runbook(runbook_id=runbook_id, data=path.read_bytes()))
        except (RunbookError, OSError) as exc:
            problems.append(RunbookProblem(str(path), str(exc)))
    return runbooks, problems


Progress = Callable[[int, int, str], None]


def sync_index(
    *, directory: Path, store: ChromaRunbookStore, embedder: Embedder,
    progress: Progress | None = None,
) -> IndexStats:
    """Make ``store`` mirror ``directory``: embed new/changed runbooks, drop deleted ones."""
    started = time.perf_counter()
    stats = IndexStats()
    if not directory.is_dir():
        # A missing folder (wrong cwd, unmounted volume) must not empty the index.
        stats.problems = [RunbookProblem(str(directory), "runbooks directory not found")]
        stats.seconds = time.perf_counter() - started
        return stats
    runbooks, stats.problems = load_runbooks(directory)
    stats.files = len(runbooks) + len(stats.problems)
    stored = store.stored_hashes()
    skipped_ids = {_id_of(directory, p.path) for p in stats.problems}
    present = {rb.id for rb in runbooks}
    # A file that became unreadable keeps its last good chunks: nothing else is lost.
    gone = [rid for rid in stored if rid not in present and rid not in skipped_ids]
    if gone:
        store.remove(runbook_ids=gone)
        stats.removed = len(gone)
    todo = [rb for rb in runbooks if stored.get(rb.id) != rb.content_hash]
    stats.unchanged = len(runbooks) - len(todo)
    total = sum(len(rb.chunks) for rb in todo)
    done = 0
    batch: list[Runbook] = []
    for rb in todo:
        batch.append(rb)
        if sum(len(b.chunks) for b in batch) >= 192:
            done += _embed_and_store(batch, store=store, embedder=embedder)
            batch = []
            if progress:
                progress(done, total, rb.id)
    if batch:
        done += _embed_and_store(batch, store=store, embedder=embedder)
        if progress:
            progress(done, total, batch[-1].id)
    stats.embedded = len(todo)
    stats.chunks = done
    stats.seconds = time.perf_counter() - started
    return stats


def _id_of(directory: Path, path: str) -> str:
    try:
        return Path(path).relative_to(directory).with_suffix("").as_posix()
    except ValueError:
        return path


def _embed_and_store(batch: list[Runbook], *, store: ChromaRunbookStore,
                     embedder: Embedder) -> int:
    texts = [c.embed_text(rb.title) for rb in batch for c in rb.chunks]
    store.replace(runbooks=batch, vectors=embedder.embed(texts))
    return len(texts)


def index_runbooks(
    settings: Settings, *, directory: Path | None = None, index_dir: Path | None = None,
    progress: Progress | None = None,
) -> IndexStats:
    """Index ``directory`` (default ``settings.runbooks_dir``) into the configured Chroma."""
    from bot.adapters.chroma import collection_for, open_runbook_store
    from bot.embeddings import build_embedder

    embedder = build_embedder(settings)
    with open_runbook_store(settings, index_dir=index_dir, embedder_name=embedder.name,
                            collection=collection_for(settings, directory)) as store:
        return sync_index(directory=directory or settings.runbooks_dir, store=store,
                          embedder=embedder, progress=progress)
