"""The scene router's head, refitted when a register is added.

The head is a logistic regression over the scene embedder's vectors, one class
per register (``ops/build_scene_model.py`` builds the shipped one with the
codebook and the concepts). :func:`refit` fits a new head for every embedder
on the train split of the catalogue's router examples, measures each
register's accuracy on the held-out split before (the head in use) and after,
and writes the new head, with the codebook and concepts unchanged, to
``SCENESTREAM_DATA_DIR/scene-model`` (where the scene builder looks first). It
refuses, writing nothing, when an existing register would fall below
``floor``, or below what it had where that was lower (the shipped heads have
registers under 0.97 already), by more than one held-out example, in the head
of the embedder the stack routes with (``SCENESTREAM_SCENE_EMBEDDER``); for
the other embedder such a fall is a warning. The new head weighs every
register's examples alike, so a few dozen new examples are not outvoted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from scenestream.schemas.codec import read_jsonl
from scenestream.schemas.registers import Catalogue
from scenestream.settings import Settings

EMBEDDERS = ("e5", "static")


def router_rows(registers: Catalogue, split: str) -> list[dict]:
    """The ``split`` rows of every router example file the catalogue names, each file read once, keeping the
    rows that label a register of the catalogue."""
    rows, seen = [], set()
    for decl in registers:
        for path in decl.router_examples:
            if path not in seen:
                seen.add(path)
                rows += read_jsonl(path)
    names = set(registers.names)
    return [row for row in rows if row.get("split") == split and row.get("register") in names]


def fit_head(
    vectors: np.ndarray, rows: Sequence[dict], names: Sequence[str], balanced: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A logistic-regression head over ``vectors`` (one per row, in order; a row with ``also`` counts 0.6 for
    its register and 0.4 for the other): ``(weights [classes, dim], biases [classes])`` in ``names`` order.
    ``balanced``: each register's rows weigh as much in all as any other's (a new register brings a few dozen
    examples where the shipped ones have about 170)."""
    from sklearn.linear_model import LogisticRegression

    names = list(names)
    counts = {name: sum(row["register"] == name for row in rows) for name in names}
    x, labels, weights = [], [], []
    for vector, row in zip(vectors, rows):
        scale = len(rows) / (len(names) * counts[row["register"]]) if balanced else 1.0
        if "also" in row and row["also"] in names:
            x += [vector, vector]
            labels += [names.index(row["register"]), names.index(row["also"])]
            weights += [0.6 * scale, 0.4 * scale]
        else:
            x.append(vector)
            labels.append(names.index(row["register"]))
            weights.append(scale)
    head = LogisticRegression(C=10.0, max_iter=5000).fit(np.vstack(x), labels, sample_weight=weights)
    return head.coef_.astype(np.float32), head.intercept_.astype(np.float32)


def accuracy(
    vectors: np.ndarray, rows: Sequence[dict], w: np.ndarray, b: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Per register of ``rows``: the share of its rows whose most likely class of the head ``(w, b)`` is it."""
    predicted = np.argmax(vectors @ w.T + b, axis=1)
    out: dict[str, list[bool]] = {}
    for row, p in zip(rows, predicted):
        out.setdefault(row["register"], []).append(classes[p] == row["register"])
    return {name: round(float(np.mean(hits)), 4) for name, hits in out.items()}


@dataclass
class Refit:
    registers: tuple[str, ...]
    before: dict[str, dict[str, float]] = field(default_factory=dict)  # embedder → register → held-out accuracy
    after: dict[str, dict[str, float]] = field(default_factory=dict)
    held_out: dict[str, int] = field(default_factory=dict)  # register → held-out rows
    refused: Optional[str] = None
    written: Optional[str] = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "registers": list(self.registers),
            "held_out": self.held_out,
            "before": self.before,
            "after": self.after,
            "refused": self.refused,
            "warnings": self.warnings,
            "written": self.written,
        }


def refit(
    registers: Catalogue,
    settings: Settings,
    floor: float = 0.97,
    embedders: Sequence[str] = EMBEDDERS,
    say: Callable[[str], None] = lambda line: None,
) -> Refit:
    """Fit the head for ``registers`` (the catalogue with the new register in it) for every embedder and write
    it unless an existing register would fall below ``floor`` (see the module docstring)."""
    from scenestream.agents.scene.embedder import make_embedder
    from scenestream.agents.scene.transform import SceneModel, head_dir, model_folder

    current = model_folder(settings)
    manifest = json.loads((current / "manifest.json").read_text(encoding="utf-8"))
    left_out = set(manifest["embedders"]) - set(embedders)
    if left_out:  # its old head would not know the new register
        raise ValueError(f"refit every embedder's head: {', '.join(sorted(left_out))} left out")
    old_names = tuple(manifest["registers"])
    names = tuple(d.name for d in registers if d.router_examples)
    train, test = router_rows(registers, "train"), router_rows(registers, "test")
    missing = [n for n in names if not any(r["register"] == n for r in test)]
    if missing:
        raise ValueError(f"no held-out router examples for {', '.join(missing)}: every register needs some")
    report = Refit(registers=names, held_out={n: sum(r["register"] == n for r in test) for n in names})
    arrays = {}
    for embedder_name in embedders:
        say(f"{embedder_name}: embedding {len(train)} train and {len(test)} held-out texts")
        embedder = make_embedder(embedder_name)
        x_train = embedder.embed([r["text"] for r in train])
        x_test = embedder.embed([r["text"] for r in test])
        model = SceneModel.load(embedder_name, current)
        old_test = [(x, r) for x, r in zip(x_test, test) if r["register"] in old_names]
        report.before[embedder_name] = accuracy(
            np.vstack([x for x, _ in old_test]), [r for _, r in old_test], model.head_w, model.head_b, old_names
        )
        w, b = fit_head(x_train, train, names, balanced=True)
        report.after[embedder_name] = accuracy(x_test, test, w, b, names)
        for name in old_names:
            if name not in names:
                continue
            was, now = report.before[embedder_name].get(name, 1.0), report.after[embedder_name][name]
            # the floor, or what it has where that is lower, give or take one held-out example (and rounding)
            if now >= min(floor, was) - 1.0 / report.held_out[name] - 1e-4:
                continue
            why = (
                f"{embedder_name}: register {name} would fall to {now:.3f} on its {report.held_out[name]} held-out "
                f"examples (it has {was:.3f}; the floor is {floor})"
            )
            if embedder_name == settings.scene_embedder:  # the routing the stack runs: refuse
                report.refused = why + ": the new register's examples are too close to it"
                return report
            report.warnings.append(why + " (not the embedder this stack routes with)")
        with np.load(current / f"scene-{embedder_name}.npz") as shipped:
            arrays[embedder_name] = {**{k: shipped[k] for k in shipped.files}, "head_w": w, "head_b": b}
    out = head_dir(settings)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {**manifest, "registers": list(names), "embedders": dict(manifest["embedders"])}
    for embedder_name, parts in arrays.items():
        path = out / f"scene-{embedder_name}.npz"
        np.savez_compressed(path, **parts)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        manifest["embedders"][embedder_name] = {**manifest["embedders"].get(embedder_name, {}), "sha256": digest}
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    report.written = str(out)
    return report
