"""The runbook index on a real Chroma server (``chroma run``, the server chromadb ships),
reached over HTTP the way production reaches the compose service: HOTWASH_CHROMA_HOST."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.retrieval import sync_and_open
from bot.settings import Settings
from tests.test_retrieval import CORPUS, write_corpus

# The `chroma` command the chromadb wheel installs beside this interpreter.
CHROMA = str(Path(sys.executable).parent / "chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not Path(CHROMA).exists():
        pytest.skip("the chroma server binary (from the chromadb package) is not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("w")
    server = subprocess.Popen([CHROMA, "run", "--path", str(data / "db"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chroma server did not start: {log.name}") from None
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_index_lives_on_the_chroma_server_and_stays_incremental(
        chroma_port: int, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    settings = Settings(data_dir=tmp_path / "data", runbooks_dir=corpus,
                        chroma_host="127.0.0.1", chroma_port=chroma_port,
                        chroma_collection="runbooks-server-test")
    index, stats = sync_and_open(settings=settings)
    assert stats.embedded == len(CORPUS)
    assert index.match("etcd has no leader")[0].id == "etcd/etcdNoLeader"
    assert not (tmp_path / "data" / "chroma").exists()  # nothing embedded on local disk

    # A second bot (another replica) finds the index on the server: nothing to embed.
    (corpus / "etcd" / "etcdNoLeader.md").unlink()
    again, stats = sync_and_open(settings=settings)
    assert (stats.embedded, stats.removed) == (0, 1)
    assert again.size == len(CORPUS) - 1
    assert all(m.id != "etcd/etcdNoLeader" for m in again.match("etcd has no leader"))
