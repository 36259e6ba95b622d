"""Embeddings from an OpenAI-compatible endpoint: a real `openai` client against a local server."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.embeddings import EmbeddingError, OpenAIEmbedder, build_embedder
from bot.retrieval import sync_and_open
from bot.settings import Settings

DIM = 64


def _vector(text: str) -> list[float]:
    """A bag-of-words vector: texts sharing words point the same way (enough to rank)."""
    vec = np.zeros(DIM)
    for word in text.lower().split():
        vec[int(hashlib.md5(word.strip(".,:;").encode()).hexdigest(), 16) % DIM] += 1.0
    return [float(x) * 3.0 for x in vec]  # not normalised: the client must normalise


class FakeEmbeddings:
    """POST /v1/embeddings on 127.0.0.1, port 0; data returned in reverse index order."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if fake.fail or self.path != "/v1/embeddings":
                    payload = json.dumps({"error": {"message": "boom"}}).encode()
                    self.send_response(400)
                else:
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    data = [{"object": "embedding", "index": i, "embedding": _vector(t)}
                            for i, t in enumerate(inputs)]
                    payload = json.dumps({
                        "object": "list", "model": body["model"], "data": data[::-1],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    }).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def server() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    yield fake
    fake.close()


def test_endpoint_vectors_come_back_in_input_order_and_normalised(
    server: FakeEmbeddings,
) -> None:
    embedder = OpenAIEmbedder(base_url=server.base_url, model="minilm", batch_size=2)
    try:
        vectors = embedder.embed(["disk full", "certificate expired", "disk full again"])
    finally:
        embedder.close()
    assert vectors.shape == (3, DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.allclose(vectors[0], np.asarray(_vector("disk full")) /
                       np.linalg.norm(_vector("disk full")))
    assert [r["model"] for r in server.requests] == ["minilm", "minilm"]  # batches of 2


def test_endpoint_failure_is_an_embedding_error(server: FakeEmbeddings) -> None:
    server.fail = True
    embedder = OpenAIEmbedder(base_url=server.base_url, model="minilm")
    try:
        with pytest.raises(EmbeddingError, match="embeddings endpoint failed"):
            embedder.embed(["anything"])
    finally:
        embedder.close()


def test_setting_the_endpoint_indexes_and_matches_through_it(
    server: FakeEmbeddings, tmp_path: Path,
) -> None:
    corpus = tmp_path / "runbooks"
    corpus.mkdir()
    (corpus / "disk-full.md").write_text(
        "# Disk full\n\n## Meaning\n\nThe disk is full on the host; writes fail.\n")
    (corpus / "cert-expiry.md").write_text(
        "# Certificate expiry\n\n## Meaning\n\nThe TLS certificate expired; clients fail.\n")
    settings = Settings(data_dir=tmp_path / "data", runbooks_dir=corpus,
                        embedding_base_url=server.base_url, embedding_model="minilm")
    embedder = build_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder) and embedder.name == "openai:minilm"
    embedder.close()

    index, stats = sync_and_open(settings=settings)
    assert stats.embedded == 2
    embedded_inputs = sum(len(r["input"]) for r in server.requests)
    assert embedded_inputs >= 2
    matches = index.match("DiskFull", limit=2)
    assert matches and matches[0].id == "disk-full"
    assert len(server.requests) > 1  # the query went to the endpoint too
