"""Runbook chunks in Chroma: an embedded PersistentClient by default, a server when configured.

Chroma never embeds anything here: every vector comes from ``bot.embeddings`` and the
collection is created with no embedding function (Chroma's default would download a model).
Telemetry is off so nothing tries the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot import metrics

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from bot.runbooks import Runbook
    from bot.settings import Settings


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as read back from the index, with its vector."""

    id: str
    runbook_id: str
    title: str
    section: str
    kind: str
    text: str
    names: tuple[str, ...]
    aliases: tuple[str, ...]
    links: tuple[str, ...]
    body_chars: int


class ChromaRunbookStore:
    """One Chroma collection holding every chunk of every runbook, keyed by runbook id."""

    def __init__(self, *, client: Any, collection: str, embedder_name: str) -> None:
        self._client = client
        self._name = collection
        self._embedder_name = embedder_name
        self._collection = self._open()

    def _open(self) -> Any:
        collection = self._client.get_or_create_collection(
            name=self._name,
            embedding_function=None,
            metadata={"hnsw:space": "cosine", "embedder": self._embedder_name},
        )
        stored = (collection.metadata or {}).get("embedder")
        if stored and stored != self._embedder_name:
            # Vectors from another model are meaningless next to ours: start again.
            self._client.delete_collection(self._name)
            collection = self._client.get_or_create_collection(
                name=self._name, embedding_function=None,
                metadata={"hnsw:space": "cosine", "embedder": self._embedder_name},
            )
        return collection

    def count(self) -> int:
        return int(self._collection.count())

    def stored_hashes(self) -> dict[str, str]:
        """runbook id -> content hash of the version that is indexed."""
        with metrics.backend_call(backend="chroma", operation="get"):
            got = self._collection.get(where={"kind": "overview"}, include=["metadatas"])
        return {str(m["runbook_id"]): str(m["hash"]) for m in got["metadatas"] or []}

    def replace(self, *, runbooks: Sequence[Runbook],
                vectors: NDArray[np.float32]) -> None:
        """Swap every stored chunk of ``runbooks`` for their current chunks, whose vectors
        are the rows of ``vectors`` in order."""
        if not runbooks:
            return
        self.remove(runbook_ids=[rb.id for rb in runbooks])
        ids: list[str] = []
        documents: list[str] = []
        metadatas: list[dict[str, Any]] = []
        for rb in runbooks:
            for c in rb.chunks:
                ids.append(c.id)
                documents.append(c.text)
                metadatas.append({
                    "runbook_id": rb.id, "title": rb.title, "section": c.section,
                    "kind": c.kind, "hash": rb.content_hash,
                    "names": "|".join(rb.names), "aliases": "|".join(rb.aliases),
                    "links": "|".join(rb.links),
                    "body_chars": rb.body_chars,
                })
        if ids:
            with metrics.backend_call(backend="chroma", operation="add"):
                self._collection.add(ids=ids, embeddings=np.asarray(vectors, dtype=np.float32),
                                     documents=documents, metadatas=metadatas)

    def remove(self, *, runbook_ids: Sequence[str]) -> None:
        if runbook_ids:
            self._collection.delete(where={"runbook_id": {"$in": list(runbook_ids)}})

    def close(self) -> None:
        """Release the client (a reference to the embedded database, or HTTP sessions)."""
        close = getattr(self._client, "close", None)
        if close is None:
            return
        owners = (self._client, getattr(self._client, "_admin_client", None))
        close()
        # chromadb 1.5 stops an HttpClient's system without closing its httpx sessions, whose
        # sockets then stay open until exit: close them once no other client shares it.
        from chromadb.api.shared_system_client import SharedSystemClient

        for owner in owners:
            server = getattr(owner, "_server", None)
            session = getattr(server, "_session", None)
            identifier = getattr(owner, "_identifier", None)
            if session is not None and identifier not in SharedSystemClient._identifier_to_system:
                session.close()

    def __enter__(self) -> ChromaRunbookStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self) -> tuple[list[StoredChunk], NDArray[np.float32]]:
        """Every chunk and its vector (the retriever scores all runbooks exactly)."""
        with metrics.backend_call(backend="chroma", operation="load"):
            got = self._collection.get(include=["documents", "metadatas", "embeddings"])
        chunks: list[StoredChunk] = []
        for chunk_id, doc, meta in zip(got["ids"], got["documents"] or [],
                                       got["metadatas"] or [], strict=True):
            chunks.append(StoredChunk(
                id=str(chunk_id), runbook_id=str(meta["runbook_id"]), title=str(meta["title"]),
                section=str(meta["section"]), kind=str(meta["kind"]), text=str(doc or ""),
                names=tuple(n for n in str(meta.get("names", "")).split("|") if n),
                aliases=tuple(n for n in str(meta.get("aliases", "")).split("|") if n),
                links=tuple(n for n in str(meta.get("links", "")).split("|") if n),
                body_chars=int(meta.get("body_chars", 0) or 0),
            ))
        embeddings = got.get("embeddings")
        if embeddings is None or len(chunks) == 0:
            return chunks, np.zeros((0, 384), dtype=np.float32)
        return chunks, np.asarray(embeddings, dtype=np.float32)


def open_client(settings: Settings, *, index_dir: Path | None = None) -> Any:
    """HttpClient when ``HOTWASH_CHROMA_HOST`` is set, else a PersistentClient on disk."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host and index_dir is None:
        return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port,
                                   settings=chroma_settings)
    path = index_dir or settings.chroma_dir
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def open_runbook_store(settings: Settings, *, index_dir: Path | None = None,
                       embedder_name: str, collection: str | None = None) -> ChromaRunbookStore:
    """The runbook collection of the configured Chroma (``index_dir`` forces an embedded one)."""
    with metrics.backend_call(backend="chroma", operation="connect"):
        return ChromaRunbookStore(client=open_client(settings, index_dir=index_dir),
                                  collection=collection or settings.chroma_collection,
                                  embedder_name=embedder_name)


def collection_for(settings: Settings, runbooks_dir: Path | None) -> str:
    """The configured collection for the configured runbooks; another corpus gets its own
    collection (name + hash of its path) so indexing it never wipes the bot's runbooks."""
    if runbooks_dir is None or runbooks_dir.resolve() == settings.runbooks_dir.resolve():
        return settings.chroma_collection
    digest = hashlib.sha1(str(runbooks_dir.resolve()).encode()).hexdigest()[:10]
    return f"{settings.chroma_collection}-{digest}"
