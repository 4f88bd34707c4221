"""Memory benchmark: the scene archive at 10k and 100k scenes, and recall of paraphrases.

    scenestream bench memory [--json] [--sizes 10000,100000]

* **store + recall**, Qdrant Edge on disk: scenes of 100 per session, stored in
  batches of 500, then 500 session-filtered recalls (limit 5); scenes/s for
  each and p50/p99 recall latency. The vectors are the project's corpus
  embedded with e5, each with a little noise, so the archive holds e5-like
  points without embedding 100k texts on 2 cores; the embedding cost is
  measured apart (``stage_scenes_per_s``: the whole memory transform, e5
  included, on real texts).
* **recall@5 of paraphrases**: one session holds the first text of every
  paraphrase pair (``data/paraphrases``) among the corpus as distractors; the
  paraphrase is the query; a hit is the original among the top 5.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scenestream.schemas.codec import read_jsonl
from scenestream.schemas.records import RegisterWeight, Scene, SceneField

ROOT = Path(__file__).resolve().parent.parent


def _scene(i: int, session: str, text: str = "", ts: int = 0) -> Scene:
    return Scene(
        scene_id=f"b{i}",
        message_id=f"m{i}",
        session_id=session,
        tenant="bench",
        text=text or f"scene {i}",
        lang="en",
        hypertokens=[],
        linkage="a·b·c",
        delta_code=f"Δ{i % 64}",
        field=SceneField(valence=0.0, arousal=0.3, tension=0.1, rhythm="measured"),
        registers=[RegisterWeight(name="poet", weight=1.0)],
        register="poet",
        ts_ms=ts or i,
    )


def _corpus_vectors(embedder, progress: bool) -> tuple[list[str], np.ndarray]:
    from scenestream.ops.train_tokenizer import corpus_lines

    lines = corpus_lines()[:1500]
    if progress:
        print(f"memory bench: embedding {len(lines)} corpus lines …", file=sys.stderr, flush=True)
    vectors = np.vstack([embedder.embed(lines[i : i + 64]) for i in range(0, len(lines), 64)])
    return lines, vectors


def _archive_run(size: int, base: np.ndarray, progress: bool) -> dict:
    from scenestream.agents.memory.archive import EdgeArchive

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        archive = EdgeArchive(Path(tmp) / "archive")
        store_s = 0.0
        for start in range(0, size, 500):
            n = min(500, size - start)
            idx = rng.integers(0, len(base), n)
            vectors = base[idx] + rng.normal(0, 0.02, (n, base.shape[1])).astype(np.float32)
            scenes = [_scene(start + k, f"s{(start + k) // 100}") for k in range(n)]
            t0 = time.perf_counter()
            archive.store(scenes, vectors)
            store_s += time.perf_counter() - t0
        if progress:
            print(f"memory bench: {size} scenes stored", file=sys.stderr, flush=True)
        latencies = []
        queries = base[rng.integers(0, len(base), 500)]
        for vector in queries:
            t0 = time.perf_counter()
            archive.recall(vector, f"s{rng.integers(0, size // 100)}", "bench", 5)
            latencies.append((time.perf_counter() - t0) * 1000)
        archive.close()
    ordered = sorted(latencies)
    return {
        "scenes": size,
        "store_scenes_per_s": round(size / store_s, 1),
        "recall_per_s": round(1000 / statistics.mean(latencies), 1),
        "recall_p50_ms": round(statistics.median(latencies), 3),
        "recall_p99_ms": round(ordered[int(0.99 * len(ordered))], 3),
    }


def _paraphrase_recall(embedder, lines: list[str], corpus: np.ndarray) -> dict:
    from scenestream.agents.memory.archive import EdgeArchive

    pairs = []
    for path in sorted((ROOT / "data" / "paraphrases").glob("*.jsonl")):
        pairs += read_jsonl(path)
    originals = embedder.embed([p["a"] for p in pairs])
    queries = embedder.embed([p["b"] for p in pairs])
    by_lang: dict[str, list[bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        archive = EdgeArchive(Path(tmp) / "archive")
        archive.store([_scene(100_000 + i, "para", text) for i, text in enumerate(lines)], corpus)
        archive.store([_scene(i, "para", p["a"]) for i, p in enumerate(pairs)], originals)
        for i, (pair, query) in enumerate(zip(pairs, queries)):
            hits = archive.recall(query, "para", "bench", 5)
            by_lang.setdefault(pair["lang"], []).append(any(h.scene_id == f"b{i}" for h in hits))
        archive.close()
    every = [hit for hits in by_lang.values() for hit in hits]
    return {
        "pairs": len(pairs),
        "distractors": len(lines),
        "recall_at_5": round(sum(every) / len(every), 4),
        "by_lang": {lang: round(sum(h) / len(h), 4) for lang, h in by_lang.items()},
    }


def _stage_rate(embedder, lines: list[str]) -> float:
    from scenestream.agents.memory.archive import EdgeArchive
    from scenestream.agents.memory.transform import Memory

    texts = lines[:256]
    scenes = [_scene(i, f"st{i % 8}", text) for i, text in enumerate(texts)]
    with tempfile.TemporaryDirectory() as tmp:
        archive = EdgeArchive(Path(tmp) / "archive")
        memory = Memory(archive, embedder)
        t0 = time.perf_counter()
        for i in range(0, len(scenes), 64):
            memory.remember(scenes[i : i + 64])
        rate = len(scenes) / (time.perf_counter() - t0)
        archive.close()
    return round(rate, 1)


def run_bench(sizes: list[int], progress: bool = True) -> dict:
    from scenestream.agents.scene.embedder import E5Embedder

    embedder = E5Embedder()
    lines, corpus = _corpus_vectors(embedder, progress)
    report = {
        "benchmark": "memory",
        "backend": "qdrant-edge (on disk)",
        "targets": {"scenes_per_s_min": 500, "recall_p99_ms_max_at_100k": 20, "recall_at_5_min": 0.9},
    }
    report["archive"] = [_archive_run(size, corpus, progress) for size in sizes]
    if progress:
        print("memory bench: paraphrase recall …", file=sys.stderr, flush=True)
    report["paraphrases"] = _paraphrase_recall(embedder, lines, corpus)
    if progress:
        print("memory bench: the whole memory transform (e5 included) …", file=sys.stderr, flush=True)
    report["stage_scenes_per_s"] = _stage_rate(embedder, lines)
    return report
