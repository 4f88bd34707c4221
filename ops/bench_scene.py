"""Scene benchmark on the project's held-out split.

    scenestream bench scene [--json] [--embedders e5,static]

For each embedder, in one run: top-register accuracy and macro-F1 on the
held-out single-register texts (Russian and English, never used for fitting),
per language, the confusion matrix, how often a mixed text's second register
is active too, Δ-code agreement between paraphrase pairs (ru, en, en→ru), and
texts/s of the stage's transform alone (batches of 64 tokens records, the
tokenizer not counted). The zero-shot baseline (cosine to one-line register
descriptions with the same e5 embeddings) runs alongside.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from scenestream.schemas.codec import read_jsonl
from scenestream.schemas.records import REGISTERS, RawText

ROOT = Path(__file__).resolve().parent.parent
LABELS = {
    "poet": "poetry, imagery, metaphor, beauty, lyrical emotion",
    "logician": "logic, reasoning, analysis, numbers, planning, cause and effect",
    "body": "the body, physical sensations, breath, pain, heartbeat, fatigue",
    "philosopher": "philosophy, the meaning of life, existence, freedom, the self, time, death",
}


def _rows(folder: str) -> list[dict]:
    rows = []
    for path in sorted((ROOT / "data" / folder).glob("*.jsonl")):
        rows += read_jsonl(path)
    return rows


def _metrics(true: list[int], pred: list[int]) -> dict:
    k = len(REGISTERS)
    confusion = np.zeros((k, k), dtype=int)
    for t, p in zip(true, pred):
        confusion[t, p] += 1
    f1s = []
    for i in range(k):
        tp = confusion[i, i]
        precision = tp / max(1, confusion[:, i].sum())
        recall = tp / max(1, confusion[i, :].sum())
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return {
        "n": len(true),
        "accuracy": round(float(np.trace(confusion) / max(1, len(true))), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "confusion": {"rows_true_cols_pred": list(REGISTERS), "matrix": confusion.tolist()},
    }


def _bench_embedder(name: str, singles, mixed, pairs, repeats: int) -> dict:
    from scenestream.agents.scene.transform import active_registers
    from scenestream.offline import scene_path
    from scenestream.settings import get_settings

    path = scene_path(get_settings().model_copy(update={"scene_embedder": name}))
    path.builder.warm_up()

    def tokens_of(texts, prefix):
        return [
            path.tokenize(RawText(message_id=f"{prefix}-{i}", session_id="bench", text=t)) for i, t in enumerate(texts)
        ]

    scenes_of = path.build

    single_tokens = tokens_of([r["text"] for r in singles], "s")
    scenes = scenes_of(single_tokens)
    true = [REGISTERS.index(r["register"]) for r in singles]
    pred = [REGISTERS.index(s.register) for s in scenes]
    result = {"held_out": _metrics(true, pred)}
    for lang in ("ru", "en"):
        idx = [i for i, r in enumerate(singles) if r["lang"] == lang]
        result[f"held_out_{lang}"] = {
            k: v for k, v in _metrics([true[i] for i in idx], [pred[i] for i in idx]).items() if k != "confusion"
        }
    mixed_scenes = scenes_of(tokens_of([r["text"] for r in mixed], "m"))
    result["mixed"] = {
        "n": len(mixed),
        "top_is_dominant": round(float(np.mean([s.register == r["register"] for s, r in zip(mixed_scenes, mixed)])), 4),
        "both_in_top2": round(
            float(
                np.mean(
                    [
                        {r["register"], r["also"]} == {x.name for x in s.registers[:2]}
                        for s, r in zip(mixed_scenes, mixed)
                    ]
                )
            ),
            4,
        ),
        "second_active": round(
            float(np.mean([r["also"] in active_registers(s) for s, r in zip(mixed_scenes, mixed)])), 4
        ),
    }
    agreement = {}
    for lang in ("ru", "en", "en-ru"):
        group = [p for p in pairs if p["lang"] == lang]
        a = scenes_of(tokens_of([p["a"] for p in group], f"pa{lang}"))
        b = scenes_of(tokens_of([p["b"] for p in group], f"pb{lang}"))
        agreement[lang] = {
            "pairs": len(group),
            "same_delta_code": round(float(np.mean([x.delta_code == y.delta_code for x, y in zip(a, b)])), 4),
        }
    result["delta_agreement"] = agreement
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        scenes_of(single_tokens)
        rates.append(len(single_tokens) / (time.perf_counter() - started))
    result["texts_per_s"] = round(statistics.median(rates), 1)
    return result


def _zero_shot(singles) -> dict:
    from scenestream.agents.scene.embedder import E5Embedder

    embedder = E5Embedder()
    labels = embedder.embed([LABELS[r] for r in REGISTERS])
    vectors = embedder.embed([r["text"] for r in singles])
    pred = list(np.argmax(vectors @ labels.T, axis=1))
    return {
        k: v for k, v in _metrics([REGISTERS.index(r["register"]) for r in singles], pred).items() if k != "confusion"
    }


def run_bench(embedders: list[str], repeats: int = 3, progress: bool = True) -> dict:
    held_out = [r for r in _rows("registers") if r["split"] == "test"]
    singles = [r for r in held_out if "also" not in r]
    mixed = [r for r in held_out if "also" in r]
    pairs = _rows("paraphrases")
    report = {
        "benchmark": "scene",
        "held_out_single": len(singles),
        "held_out_mixed": len(mixed),
        "paraphrase_pairs": len(pairs),
        "targets": {"accuracy_min": 0.97, "texts_per_s_min": 500},
    }
    for name in embedders:
        if progress:
            print(f"scene bench: {name} …", file=sys.stderr, flush=True)
        report[name] = _bench_embedder(name, singles, mixed, pairs, repeats)
    if progress:
        print("scene bench: zero-shot baseline …", file=sys.stderr, flush=True)
    report["zero_shot_e5_labels"] = _zero_shot(singles)
    return report


def format_report(report: dict) -> str:
    lines = [
        f"scene: {report['held_out_single']} held-out single-register texts (ru+en), "
        f"{report['held_out_mixed']} mixed, {report['paraphrase_pairs']} paraphrase pairs"
    ]
    lines.append(
        f"{'embedder':10}{'acc':>8}{'macroF1':>9}{'acc ru':>8}{'acc en':>8}{'mix 2nd':>9}"
        f"{'Δ ru':>7}{'Δ en':>7}{'Δ en→ru':>9}{'texts/s':>9}"
    )
    for name in ("e5", "static"):
        if name not in report:
            continue
        r = report[name]
        d = r["delta_agreement"]
        lines.append(
            f"{name:10}{r['held_out']['accuracy']:>8.3f}{r['held_out']['macro_f1']:>9.3f}"
            f"{r['held_out_ru']['accuracy']:>8.3f}{r['held_out_en']['accuracy']:>8.3f}"
            f"{r['mixed']['second_active']:>9.3f}{d['ru']['same_delta_code']:>7.2f}"
            f"{d['en']['same_delta_code']:>7.2f}{d['en-ru']['same_delta_code']:>9.2f}{r['texts_per_s']:>9.1f}"
        )
    z = report["zero_shot_e5_labels"]
    lines.append(f"zero-shot e5 label descriptions: accuracy {z['accuracy']:.3f}, macro-F1 {z['macro_f1']:.3f}")
    for name in ("e5", "static"):
        if name in report:
            m = report[name]["held_out"]["confusion"]["matrix"]
            lines.append(f"confusion ({name}; rows true, cols predicted: {', '.join(REGISTERS)}): {m}")
    lines.append("targets: accuracy ≥ 0.97, ≥ 500 texts/s")
    return "\n".join(lines)
