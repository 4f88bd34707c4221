"""Build the scene builder's shipped model files from the project's own data.

    pip install -e '.[train]'                     # scikit-learn, only for this script
    python -m scenestream.ops.build_scene_model   # writes agents/scene/model/*

What it builds, for each embedder (``e5`` and ``static``):

* the **register head**: a logistic regression over sentence embeddings,
  fitted on the *train* split of ``data/registers/*.jsonl`` (mixed examples
  count for both of their registers, 0.6 / 0.4). The held-out split is never
  used here, for fitting or for choosing anything;
* the **Δ-codebook**: k-means prototypes of the project's corpus
  (``data/corpus/*.txt`` plus the train texts); ``Δn`` is the index of the
  nearest prototype;
* the **concept lexicon** embeddings (``agents/scene/lexicon/concepts.json``),
  Russian and English names.

``static.npz`` (the per-piece e5 table of the static embedder) is built first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import typer

from scenestream.schemas.codec import read_jsonl
from scenestream.schemas.registers import catalogue
from scenestream.training.router import fit_head

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "agents" / "scene" / "model"
LEXICON = ROOT / "agents" / "scene" / "lexicon" / "concepts.json"


def head_registers() -> tuple[str, ...]:
    """The head's classes: every register of the catalogue that names router examples, in catalogue order."""
    return tuple(decl.name for decl in catalogue() if decl.router_examples)


def load_register_rows(split: str) -> list[dict]:
    """The ``split`` rows of the catalogue's router example files that label a register of the head."""
    rows, seen = [], set()
    for decl in catalogue():
        for path in decl.router_examples:
            if path not in seen:
                seen.add(path)
                rows += read_jsonl(path)
    names = head_registers()
    return [row for row in rows if row["split"] == split and row["register"] in names]


def _batched(embed, texts: list[str], label: str, batch: int = 64) -> np.ndarray:
    from rich.progress import track

    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    return np.vstack([embed(chunk) for chunk in track(chunks, description=f"embedding {label}")])


def build_static_table(out: Path) -> None:
    from scenestream.agents.scene.embedder import E5Embedder
    from scenestream.agents.tokenizer.transform import default_tokenizer

    sp = default_tokenizer().sp
    size = sp.get_piece_size()
    texts = [(sp.id_to_piece(i).replace("▁", " ").strip() or "▁") for i in range(size)]
    table = _batched(E5Embedder().embed, texts, "pieces", batch=128)
    table = table - table.mean(axis=0)  # remove the common direction every piece shares
    probs = np.exp([sp.get_score(i) for i in range(size)])
    weights = 1e-3 / (1e-3 + probs)
    for i in range(size):
        if sp.is_control(i) or sp.is_unknown(i):
            weights[i] = 0.0
    np.savez_compressed(out, pieces=table.astype(np.float16), weights=weights.astype(np.float32))


def build_for(embedder_name: str, concepts: list[dict], corpus: list[str], k: int) -> tuple[dict, dict]:
    from sklearn.cluster import KMeans

    from scenestream.agents.scene.embedder import make_embedder

    embedder = make_embedder(embedder_name)
    registers = head_registers()
    train = load_register_rows("train")
    X = _batched(embedder.embed, [row["text"] for row in train], f"{embedder_name}: register train split")
    head_w, head_b = fit_head(X, train, registers)
    labels = np.array([registers.index(row["register"]) for row in train])
    corpus_x = _batched(embedder.embed, corpus, f"{embedder_name}: corpus")
    kmeans = KMeans(n_clusters=k, n_init=4, random_state=0).fit(corpus_x)
    centroids = kmeans.cluster_centers_ / np.linalg.norm(kmeans.cluster_centers_, axis=1, keepdims=True)
    arrays = {
        "head_w": head_w,
        "head_b": head_b,
        "codebook": centroids.astype(np.float32),
        "concepts_ru": embedder.embed([c["ru"] for c in concepts]),
        "concepts_en": embedder.embed([c["en"] for c in concepts]),
    }
    info = {
        "train_examples": len(train),
        # the share of train texts whose most likely register is their own (an "also" text: its first)
        "train_accuracy": round(float(np.mean(np.argmax(X @ head_w.T + head_b, axis=1) == labels)), 4),
        "codebook_size": k,
        "corpus_lines": len(corpus),
    }
    return arrays, info


def main(
    codebook_size: int = typer.Option(64, help="Number of Δ prototypes."),
    skip_static_table: bool = typer.Option(False, help="Reuse the existing static.npz."),
) -> None:
    """Build agents/scene/model/ from data/ (train split only)."""
    from scenestream.ops.train_tokenizer import corpus_lines

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    if not skip_static_table:
        build_static_table(MODEL_DIR / "static.npz")
    concepts = json.loads(LEXICON.read_text(encoding="utf-8"))
    corpus = corpus_lines()
    manifest = {"registers": list(head_registers()), "concepts": concepts, "embedders": {}}
    for name in ("e5", "static"):
        arrays, info = build_for(name, concepts, corpus, codebook_size)
        path = MODEL_DIR / f"scene-{name}.npz"
        np.savez_compressed(path, **arrays)
        info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        manifest["embedders"][name] = info
        typer.echo(f"{name}: {info}")
    (MODEL_DIR / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    typer.run(main)
