"""The style judge: which register's voice a text speaks in, with numpy only.

A judge is never also the filter. The scene builder's register router (multilingual-e5 embeddings and a logistic
regression, ``agents/scene/``) chooses which training examples the adapters learn from, so it cannot also grade
their answers. This judge is built apart from all of that: from its own style set, ``data/judge/style.jsonl``
(each register speaking about every theme, so it learns voice rather than topic), with different features
(TF-IDF of character 2–5-grams within words and of words and word pairs, no embeddings), by
``python -m scenestream.ops.build_judge``. Training code never imports this module (a unit test checks it).

    from scenestream.ops.judge import Judge
    judge = Judge.load()
    judge.classify(["Breathe out slowly and let your shoulders drop."])
    # [{'register': 'body', 'probabilities': {'body': 0.9…, 'logician': …, …}}]

The shipped model is plain arrays, ``ops/judge.npz`` (for each feature block its vocabulary, in column order, and
its idf weights; the logistic regression's coefficients and intercepts), and a manifest, ``ops/judge.json``
(the feature settings, the class names, the SHA-256 of the style set it was fitted on, and its held-out
accuracy). The feature extraction below reproduces scikit-learn's ``TfidfVectorizer`` exactly (lowercasing,
``char_wb`` n-grams, the default token pattern, sublinear tf, idf, l2 norm per block), so scikit-learn is needed to
build the judge, never to run it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
ARRAYS = HERE / "judge.npz"
MANIFEST = HERE / "judge.json"


def char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams inside words, each word padded with one space either side (scikit-learn's ``char_wb``)."""
    grams = []
    for word in text.lower().split():
        word = f" {word} "
        for n in range(low, high + 1):
            offset = 0
            grams.append(word[offset : offset + n])
            while offset + n < len(word):
                offset += 1
                grams.append(word[offset : offset + n])
            if offset == 0:  # a word shorter than n counts once, and longer n-grams would repeat it
                break
    return grams


def word_ngrams(text: str, low: int, high: int, token_pattern: str) -> list[str]:
    """Word n-grams of the lowercased text's tokens (scikit-learn's ``word`` analyzer, no stop words)."""
    tokens = re.findall(token_pattern, text.lower())
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


@dataclass(frozen=True)
class Block:
    """One TF-IDF feature block: how a text becomes n-grams, their columns, and the idf weights."""

    analyzer: str  # "char_wb" or "word"
    ngram_range: tuple[int, int]
    token_pattern: str
    sublinear_tf: bool
    index: dict[str, int]
    idf: np.ndarray

    def grams(self, text: str) -> list[str]:
        low, high = self.ngram_range
        if self.analyzer == "char_wb":
            return char_wb_ngrams(text, low, high)
        if self.analyzer == "word":
            return word_ngrams(text, low, high, self.token_pattern)
        raise ValueError(f"unknown analyzer {self.analyzer!r}")

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Dense ``[len(texts), vocabulary]`` TF-IDF rows, each of unit length (or zero)."""
        out = np.zeros((len(texts), len(self.idf)), dtype=np.float64)
        for row, text in enumerate(texts):
            counts: dict[int, int] = {}
            for gram in self.grams(text):
                column = self.index.get(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            for column, count in counts.items():
                out[row, column] = (1.0 + math.log(count)) if self.sublinear_tf else float(count)
        out *= self.idf
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


class Judge:
    """Classifies texts into the registers named by the manifest, from the shipped arrays."""

    def __init__(self, manifest: dict, arrays: dict[str, np.ndarray]):
        self.manifest = manifest
        self.classes: list[str] = list(manifest["classes"])
        self.blocks: list[tuple[Block, float]] = []
        for spec in manifest["features"]:
            name = spec["name"]
            vocabulary = [str(term) for term in arrays[f"{name}_vocabulary"]]
            block = Block(
                analyzer=spec["analyzer"],
                ngram_range=(int(spec["ngram_range"][0]), int(spec["ngram_range"][1])),
                token_pattern=spec.get("token_pattern", r"(?u)\b\w\w+\b"),
                sublinear_tf=bool(spec["sublinear_tf"]),
                index={term: column for column, term in enumerate(vocabulary)},
                idf=np.asarray(arrays[f"{name}_idf"], dtype=np.float64),
            )
            self.blocks.append((block, float(spec.get("weight", 1.0))))
        self.coef = np.asarray(arrays["coef"], dtype=np.float64)
        self.intercept = np.asarray(arrays["intercept"], dtype=np.float64)
        width = sum(len(block.idf) for block, _ in self.blocks)
        if self.coef.shape != (len(self.classes), width) or self.intercept.shape != (len(self.classes),):
            raise ValueError(
                f"judge arrays do not fit the manifest: coef {self.coef.shape}, {width} features, "
                f"{len(self.classes)} classes"
            )

    @classmethod
    def load(cls, arrays: Path = ARRAYS, manifest: Path = MANIFEST) -> Judge:
        with np.load(arrays, allow_pickle=False) as npz:
            loaded = {key: npz[key] for key in npz.files}
        return cls(json.loads(Path(manifest).read_text(encoding="utf-8")), loaded)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        return np.hstack([block.transform(texts) * weight for block, weight in self.blocks])

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), len(classes)]`` class probabilities (multinomial logistic regression: a softmax)."""
        logits = self.features(texts) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [self.classes[i] for i in self.probabilities(texts).argmax(axis=1)]

    def classify(self, texts: Sequence[str]) -> list[dict]:
        """Per text its register and the probability of every register."""
        probabilities = self.probabilities(texts)
        return [
            {
                "register": self.classes[int(row.argmax())],
                "probabilities": {name: float(p) for name, p in zip(self.classes, row)},
            }
            for row in probabilities
        ]


def accuracy(predicted: Sequence[str], rows: Sequence[dict]) -> dict:
    """Share of ``rows`` whose ``register`` was predicted: overall, per register and per language."""

    def share(pairs: list[tuple[str, dict]]) -> float:
        return round(sum(p == row["register"] for p, row in pairs) / len(pairs), 4) if pairs else float("nan")

    pairs = list(zip(predicted, rows))
    return {
        "overall": share(pairs),
        "n": len(pairs),
        "per_register": {
            r: share([x for x in pairs if x[1]["register"] == r]) for r in sorted({row["register"] for row in rows})
        },
        "per_language": {
            lang: share([x for x in pairs if x[1]["lang"] == lang]) for lang in sorted({row["lang"] for row in rows})
        },
    }
