"""Runbook parsing and incremental indexing into an embedded Chroma, on corpora written here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from bot.adapters.chroma import ChromaRunbookStore, open_client
from bot.embeddings import OnnxEmbedder
from bot.runbooks import RunbookError, load_runbooks, parse_runbook, sync_index, words
from bot.settings import Settings

CRASH = """---
title: Kube Pod Crash Looping
alerts: [PodRestartingTooOften]
services: [checkout]
tags: [kubernetes]
---

# KubePodCrashLooping

## Meaning

The container keeps dying and Kubernetes restarts it with a growing back-off.

## Diagnosis

### Logs

Read the previous container's logs: `kubectl logs --previous`.

### Events

`kubectl describe pod` shows probe failures and OOM kills.

## Mitigation

Roll back the deploy that started the restarts.
"""

DISK = """---
title: Disk almost full
---

# Disk almost full

## Meaning

A filesystem on a host is close to running out of space.

## Mitigation

Delete old logs, grow the volume.
"""


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder()


class CountingEmbedder:
    """Wraps the real model and counts what it was asked to embed."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.texts += len(texts)
        return self.inner.embed(texts)


def _store(tmp_path: Path, name: str = "runbooks") -> ChromaRunbookStore:
    client = open_client(Settings(data_dir=tmp_path / "data"))
    return ChromaRunbookStore(client=client, collection=name, embedder_name="test-model")


def test_words_split_alert_names() -> None:
    assert words("KubePodCrashLooping") == ["kube", "pod", "crash", "looping"]
    assert words("etcdHighFsyncDurations") == ["etcd", "high", "fsync", "durations"]
    assert words("node_filesystem-full") == ["node", "filesystem", "full"]
    assert words("CPUThrottlingHigh") == ["cpu", "throttling", "high"]


def test_parse_keeps_front_matter_names_and_section_paths() -> None:
    runbook = parse_runbook(runbook_id="kubernetes/KubePodCrashLooping", data=CRASH.encode())
    assert runbook.title == "Kube Pod Crash Looping"
    assert runbook.names[0] == "KubePodCrashLooping"
    assert "PodRestartingTooOften" in runbook.aliases
    assert runbook.services == ("checkout",)
    sections = [c.section for c in runbook.chunks]
    # The opening section is folded into the overview chunk; the top heading is not repeated.
    assert sections == ["Meaning", "Diagnosis > Logs", "Diagnosis > Events", "Mitigation"]
    assert runbook.chunks[0].kind == "overview"
    assert "growing back-off" in runbook.chunks[0].text
    assert [c.id for c in runbook.chunks] == [f"kubernetes/KubePodCrashLooping#{i}"
                                              for i in range(4)]


def test_heading_that_differs_from_the_file_name_is_kept_as_a_name_not_the_id() -> None:
    text = "---\ntitle: Remote Write Behind\n---\n# RemoteStorageFailures\n\n## Meaning\n\nlag.\n"
    runbook = parse_runbook(runbook_id="prometheus/RemoteWriteBehind", data=text.encode())
    assert runbook.id == "prometheus/RemoteWriteBehind"
    assert runbook.names[0] == "RemoteWriteBehind"
    assert "RemoteStorageFailures" in runbook.names
    assert "RemoteStorageFailures" not in runbook.aliases


def test_link_only_page_records_its_target() -> None:
    text = ('# NodeRAIDDiskFailure\n\n'
            'See [Node RAID Degraded]({{< ref "./NodeRAIDDegraded.md" >}})\n')
    runbook = parse_runbook(runbook_id="node/NodeRAIDDiskFailure", data=text.encode())
    assert runbook.links == ("node/NodeRAIDDegraded",)
    assert runbook.body_chars < 200


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"---\ntitle: [unclosed\n---\n# x\n", "malformed front matter"),
        (b"---\n- just\n- a list\n---\n# x\n", "malformed front matter"),
        (b"---\ntitle: never closed\n# x\n", "malformed front matter"),
        ("# caf\u00e9".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_files_raise_a_named_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RunbookError, match=reason):
        parse_runbook(runbook_id="bad", data=data)


def test_load_reports_bad_files_by_name_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text(DISK)
    (tmp_path / "broken.md").write_text("---\ntitle: [oops\n---\n# Broken\n")
    (tmp_path / "latin.md").write_bytes("# Disque plein \xe9t\xe9".encode("latin-1"))
    (tmp_path / "_index.md").write_text("---\ntitle: section page\n---\n")
    runbooks, problems = load_runbooks(tmp_path)
    assert [r.id for r in runbooks] == ["good"]
    assert sorted(Path(p.path).name for p in problems) == ["broken.md", "latin.md"]
    assert all(p.error for p in problems)


def test_second_run_over_an_unchanged_tree_embeds_nothing(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    corpus = tmp_path / "runbooks"
    (corpus / "kubernetes").mkdir(parents=True)
    (corpus / "kubernetes" / "KubePodCrashLooping.md").write_text(CRASH)
    (corpus / "disk-full.md").write_text(DISK)
    counting = CountingEmbedder(embedder)
    store = _store(tmp_path)

    first = sync_index(directory=corpus, store=store, embedder=counting)
    assert (first.embedded, first.unchanged, first.removed) == (2, 0, 0)
    assert counting.texts == first.chunks == store.count() == 6

    counting.texts = 0
    second = sync_index(directory=corpus, store=store, embedder=counting)
    assert (second.embedded, second.unchanged, second.chunks) == (0, 2, 0)
    assert counting.texts == 0


def test_changed_file_is_re_embedded_and_deleted_file_removed(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    corpus = tmp_path / "runbooks"
    corpus.mkdir()
    (corpus / "crash.md").write_text(CRASH)
    (corpus / "disk.md").write_text(DISK)
    counting = CountingEmbedder(embedder)
    store = _store(tmp_path)
    sync_index(directory=corpus, store=store, embedder=counting)

    (corpus / "disk.md").write_text(DISK.replace("Delete old logs", "Compress old logs"))
    (corpus / "crash.md").unlink()
    counting.texts = 0
    stats = sync_index(directory=corpus, store=store, embedder=counting)
    assert (stats.embedded, stats.removed, stats.unchanged) == (1, 1, 0)
    assert counting.texts == 2  # only the changed runbook's two chunks
    chunks, vectors = store.load()
    assert {c.runbook_id for c in chunks} == {"disk"}
    assert any("Compress old logs" in c.text for c in chunks)
    assert vectors.shape == (2, 384)


def test_file_that_turns_unreadable_keeps_its_last_good_version(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    corpus = tmp_path / "runbooks"
    corpus.mkdir()
    (corpus / "disk.md").write_text(DISK)
    store = _store(tmp_path)
    sync_index(directory=corpus, store=store, embedder=embedder)
    (corpus / "disk.md").write_text("---\ntitle: [broken\n---\n")
    stats = sync_index(directory=corpus, store=store, embedder=embedder)
    assert stats.removed == 0
    assert [Path(p.path).name for p in stats.problems] == ["disk.md"]
    assert store.stored_hashes().keys() == {"disk"}


def test_index_survives_reopening_from_disk(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    corpus = tmp_path / "runbooks"
    corpus.mkdir()
    (corpus / "disk.md").write_text(DISK)
    sync_index(directory=corpus, store=_store(tmp_path), embedder=embedder)
    reopened = _store(tmp_path)
    counting = CountingEmbedder(embedder)
    assert sync_index(directory=corpus, store=reopened, embedder=counting).embedded == 0
    assert counting.texts == 0


def test_vectors_from_another_model_are_dropped(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    corpus = tmp_path / "runbooks"
    corpus.mkdir()
    (corpus / "disk.md").write_text(DISK)
    sync_index(directory=corpus, store=_store(tmp_path), embedder=embedder)
    client = open_client(Settings(data_dir=tmp_path / "data"))
    other = ChromaRunbookStore(client=client, collection="runbooks", embedder_name="other-model")
    assert other.count() == 0


def test_embeddings_are_normalised_and_semantic(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed(["the disk is full", "filesystem out of space",
                              "TLS certificate expired", ""])
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    # Batching pads to the longest text in the batch: results do not depend on the batch.
    alone = embedder.embed(["filesystem out of space"])[0]
    assert float(alone @ vectors[1]) > 0.9999


def test_missing_directory_never_empties_the_index(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    corpus = tmp_path / "runbooks"
    corpus.mkdir()
    (corpus / "disk.md").write_text(DISK)
    store = _store(tmp_path)
    sync_index(directory=corpus, store=store, embedder=embedder)
    stats = sync_index(directory=tmp_path / "elsewhere", store=store, embedder=embedder)
    assert stats.removed == 0
    assert stats.problems[0].error == "runbooks directory not found"
    assert store.stored_hashes().keys() == {"disk"}
