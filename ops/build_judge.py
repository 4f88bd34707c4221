"""Build the style judge (``ops/judge.npz`` + ``ops/judge.json``) from ``data/judge/style.jsonl``.

    pip install -e '.[train]'          # scikit-learn, for building only
    python -m scenestream.ops.build_judge

The judge grades which register's voice an answer speaks in, and it must be independent of everything that shaped
the adapters: the scene builder's router (e5 embeddings + logistic regression) selected their training examples,
so the judge uses different features and different data. Features: two TF-IDF blocks, character 2–5-grams within
words (``char_wb``: endings, punctuation such as "→" or "?", digits, word shapes) and words and word pairs
("therefore", "your shoulders", "perhaps we"); sublinear tf, each block l2-normalised, the word block scaled by
a weight. Classifier: a multinomial logistic regression. C and the word block's weight are chosen by
cross-validation on the train split alone, its folds made of whole themes (as the held-out split is).

The style set: short answer-like passages, each of the four registers speaking about each of 12 everyday themes,
in Russian and English, ten per cell (written in two rounds of five: the second round's passages are 1–3 sentences,
12–45 words, closer to an answer's length). **The split is by whole themes**: every fourth theme of the file's
theme order (money, city, arithmetic) is held out entirely, for every register and both languages (240 of 960
rows, 25%). Why whole themes and not one passage per cell: the judge will read answers about any topic, so what must be
measured is whether it recognises a voice on a topic it has never seen; with a per-cell split every test passage
would have three train passages of the same register on the same theme, and topic words could carry the score.
The held-out themes include arithmetic, where topic and register pull apart most (the poet, the body and the
philosopher on arithmetic must not read as the logician). The held-out accuracy, overall, per register and per
language, is that of the shipped numpy classifier on the test split, and goes into the manifest.

Nothing here is imported by training code, and the judge's data shares no text with the training data (unit tests
check both).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from scenestream.ops.judge import ARRAYS, MANIFEST, Judge, accuracy
from scenestream.schemas.codec import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
STYLE = ROOT / "data" / "judge" / "style.jsonl"
FEATURES = [
    {"name": "char", "analyzer": "char_wb", "ngram_range": [2, 5], "sublinear_tf": True, "weight": 1.0},
    {
        "name": "word",
        "analyzer": "word",
        "ngram_range": [1, 2],
        "token_pattern": r"(?u)\b\w\w+\b",
        "sublinear_tf": True,
        "weight": 1.0,
    },
]
CS = (3.0, 10.0, 30.0)  # the logistic regression's C,
WORD_WEIGHTS = (0.5, 1.0)  # and the word block's weight against the character block's 1: chosen by grouped CV
FOLDS = 3


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def vectorizers():
    from sklearn.feature_extraction.text import TfidfVectorizer

    made = []
    for spec in FEATURES:
        kwargs = {
            "analyzer": spec["analyzer"],
            "ngram_range": tuple(spec["ngram_range"]),
            "sublinear_tf": spec["sublinear_tf"],
            "lowercase": True,
        }
        if "token_pattern" in spec:
            kwargs["token_pattern"] = spec["token_pattern"]
        made.append(TfidfVectorizer(**kwargs))
    return made


def features(word_weight: float) -> list[dict]:
    """FEATURES with the word block's weight set."""
    return [dict(spec, weight=word_weight) if spec["name"] == "word" else dict(spec) for spec in FEATURES]


def fit(texts: Sequence[str], labels: Sequence[str], c: float, word_weight: float):
    """The fitted vectorizers and logistic regression (scikit-learn) for one C and word block weight."""
    from sklearn.linear_model import LogisticRegression

    fitted = [v.fit(texts) for v in vectorizers()]
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit(transform(fitted, texts, word_weight), list(labels))
    return fitted, model


def transform(fitted, texts: Sequence[str], word_weight: float):
    """The texts' features, a sparse matrix: the blocks side by side, each scaled by its weight."""
    from scipy.sparse import hstack

    specs = features(word_weight)
    return hstack([v.transform(texts) * spec["weight"] for v, spec in zip(fitted, specs)]).tocsr()


def choose(rows: Sequence[dict]) -> tuple[float, float, dict[str, float]]:
    """The C and word block weight with the best accuracy over folds of whole themes of the train split (ties: the
    smaller C, then the smaller weight), and every setting's accuracy."""
    themes = sorted({row["theme"] for row in rows})
    folds = [themes[i::FOLDS] for i in range(FOLDS)]
    scores = {}
    for c in CS:
        for weight in WORD_WEIGHTS:
            correct = 0
            for held in folds:
                train = [row for row in rows if row["theme"] not in held]
                test = [row for row in rows if row["theme"] in held]
                fitted, model = fit([r["text"] for r in train], [r["register"] for r in train], c, weight)
                predicted = model.predict(transform(fitted, [r["text"] for r in test], weight))
                correct += sum(p == r["register"] for p, r in zip(predicted, test))
            scores[f"C={c:g} word_weight={weight:g}"] = round(correct / len(rows), 4)
    c, weight = max(
        ((c, w) for c in CS for w in WORD_WEIGHTS),
        key=lambda cw: (scores[f"C={cw[0]:g} word_weight={cw[1]:g}"], -cw[0], -cw[1]),
    )
    return c, weight, scores


def arrays_of(fitted, model) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for v, spec in zip(fitted, FEATURES):
        terms = sorted(v.vocabulary_, key=v.vocabulary_.get)
        arrays[f"{spec['name']}_vocabulary"] = np.array(terms, dtype=str)
        arrays[f"{spec['name']}_idf"] = v.idf_.astype(np.float64)
    arrays["coef"] = model.coef_.astype(np.float64)
    arrays["intercept"] = model.intercept_.astype(np.float64)
    return arrays


def build(style: Path = STYLE, out_arrays: Path = ARRAYS, out_manifest: Path = MANIFEST) -> dict:
    rows = read_jsonl(style)
    train = [row for row in rows if row["split"] == "train"]
    test = [row for row in rows if row["split"] == "test"]
    c, weight, cv = choose(train)
    fitted, model = fit([r["text"] for r in train], [r["register"] for r in train], c, weight)
    manifest = {
        "what": "style judge: which register's voice a text speaks in (numpy classifier: scenestream.ops.judge)",
        "data": "data/judge/style.jsonl",
        "sha256": sha256(style),
        "classes": [str(name) for name in model.classes_],
        "features": features(weight),
        "classifier": {
            "kind": "multinomial logistic regression",
            "C": c,
            "cv_accuracy": cv,
            "cv": f"{FOLDS} folds of whole themes of the train split",
        },
        "split": "by whole themes",
        "train_rows": len(train),
        "test_themes": sorted({row["theme"] for row in test}),
    }
    arrays = arrays_of(fitted, model)
    judge = Judge(manifest, arrays)
    predicted = judge.predict([r["text"] for r in test])
    reference = list(model.predict(transform(fitted, [r["text"] for r in test], weight)))
    if predicted != reference:
        raise RuntimeError("the numpy judge disagrees with scikit-learn on the test split")
    manifest["held_out"] = accuracy(predicted, test)
    np.savez_compressed(out_arrays, **arrays)
    Path(out_manifest).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", type=Path, default=STYLE)
    parser.add_argument("--out", type=Path, default=ARRAYS, help="the arrays (.npz); the manifest goes beside it")
    args = parser.parse_args(argv)
    manifest = build(args.style, args.out, args.out.with_suffix(".json"))
    summary = {"C": manifest["classifier"]["C"], "features": manifest["features"], "held_out": manifest["held_out"]}
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
