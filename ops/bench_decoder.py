"""Decoder benchmarks and quality, on scenes the scene builder makes from held-out texts.

    scenestream bench decoder [--json]     # (a) one request at a time, (b) batched, (c) vLLM multi-LoRA
    scenestream bench quality [--json]     # answers to the eval set, adapters and the base model side by side

``bench decoder``: the same scenes (64 by default, spread evenly over the four
registers, from the *test* split of ``data/decoder/``) go through every engine
in one run; tokens/s counts generated tokens over wall time; time to first
token is the median over requests.

``bench quality``: every prompt of ``data/eval/prompts.jsonl`` (never in any
training, sampling or router data) asked in every register, answered by the
register's adapter and by the base model with the same prompt, both through
the decoder's answer policy (``Decoder.answer``: what a user gets), and every
answer read by the style judge (``ops/judge.py``, built apart from the router),
the checks of ``agents/decoder/answers.py``, e5 relevance and the router; see
:func:`run_quality`.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from scenestream.schemas.records import REGISTERS
from scenestream.settings import Settings, get_settings

if TYPE_CHECKING:
    from scenestream.agents.decoder.engines import Request
    from scenestream.schemas.records import Scene


def heldout_scenes(n: int, settings: Settings):
    """``n`` scenes from held-out texts, registers round-robin, the register forced to the row's."""
    from scenestream.offline import scenes_for
    from scenestream.schemas.records import RawText
    from scenestream.training.examples import load_examples

    per = {r: load_examples(r, "test") for r in REGISTERS}
    rows = []
    i = 0
    while len(rows) < n:
        register = REGISTERS[i % len(REGISTERS)]
        pool = per[register]
        rows.append((register, pool[(i // len(REGISTERS)) % len(pool)]))
        i += 1
    raws = [
        RawText(message_id=f"bench-{k}", session_id="bench", text=row["text"], force_register=register)
        for k, (register, row) in enumerate(rows)
    ]
    return scenes_for(raws, settings), rows


def _run(engine, requests, batch: int) -> dict:
    started = time.perf_counter()
    generations = []
    for i in range(0, len(requests), batch):
        generations += engine.generate(requests[i : i + batch])
    wall = time.perf_counter() - started
    tokens = sum(g.completion_tokens for g in generations)
    firsts = [g.first_token_ms for g in generations if g.first_token_ms is not None]
    return {
        "requests": len(requests),
        "batch": batch,
        "generated_tokens": tokens,
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_ms": round(statistics.median(firsts), 1) if firsts else None,
    }


def run_decoder_bench(
    n: int = 64, batch: int = 16, include_vllm: bool = True, progress: bool = True, single_limit: Optional[int] = None
) -> dict:
    from scenestream.agents.decoder.engines import TransformersEngine, VLLMEngine, vllm_available
    from scenestream.agents.decoder.transform import Decoder

    settings = get_settings()
    scenes, _rows = heldout_scenes(n, settings)
    report: dict = {"benchmark": "decoder", "scenes": n, "max_new_tokens": settings.max_new_tokens}

    def say(msg):
        if progress:
            print(msg, file=sys.stderr, flush=True)

    say("decoder bench: loading transformers + PEFT …")
    peft = TransformersEngine(settings.model_copy(update={"lora_kernel": "peft"}))
    requests = Decoder(peft).requests(scenes)
    report["adapters"] = sorted(peft.adapters)
    single = requests[:single_limit] if single_limit else requests
    say(f"decoder bench: (a) transformers + PEFT, one request at a time ({len(single)}) …")
    report["a_transformers_single"] = _run(peft, single, 1)
    if settings.lora_kernel != "peft":
        say(f"decoder bench: (b') transformers + PEFT (adapter_names), batches of {batch} …")
        report["b_transformers_batched_peft"] = {**_run(peft, requests, batch), "lora_kernel": "peft"}
    del peft
    say(f"decoder bench: (b) the transformers engine (LoRA kernel {settings.lora_kernel}), batches of {batch} …")
    engine = TransformersEngine(settings)
    report["b_transformers_batched"] = {**_run(engine, requests, batch), "lora_kernel": settings.lora_kernel}
    del engine
    if include_vllm and vllm_available():
        from scenestream.agents.decoder.engines import find_tcmalloc

        tcmalloc = find_tcmalloc() if settings.vllm_tcmalloc else None
        variants = [("c_vllm", "(c) vLLM multi-LoRA", {})]
        if settings.vllm_cpu_ops:
            variants.append(
                (
                    "c_vllm_without_cpu_ops",
                    "(c') the same with vLLM's own CPU LoRA and penalty ops",
                    {"vllm_cpu_ops": False},
                )
            )
        if tcmalloc:
            variants.append(("c_vllm_without_tcmalloc", "(c'') the same without tcmalloc", {"vllm_tcmalloc": False}))
        for key, label, changes in variants:
            say(f"decoder bench: {label} (engine start not counted) …")
            vllm = VLLMEngine(settings.model_copy(update=changes))
            report[key] = {
                **_run(vllm, requests, len(requests)),
                "tcmalloc": tcmalloc if changes.get("vllm_tcmalloc", settings.vllm_tcmalloc) else None,
                "scenestream_cpu_ops": changes.get("vllm_cpu_ops", settings.vllm_cpu_ops),
            }
            vllm.close()
    else:
        report["c_vllm"] = {"skipped": "vLLM is not installed in this environment"}
    a = report["a_transformers_single"]["tokens_per_s"]
    report["ratio_b_over_a"] = round(report["b_transformers_batched"]["tokens_per_s"] / a, 2)
    if "b_transformers_batched_peft" in report:
        report["ratio_b_peft_over_a"] = round(report["b_transformers_batched_peft"]["tokens_per_s"] / a, 2)
    for key in ("c_vllm", "c_vllm_without_cpu_ops", "c_vllm_without_tcmalloc"):
        if "tokens_per_s" in report.get(key, {}):
            report[f"ratio_{key[2:]}_over_a"] = round(report[key]["tokens_per_s"] / a, 2)
    report["targets"] = {"vllm_over_single_min": 10}
    return report


# ------------------------------------------------------------------------------------------------------ quality

ROOT = Path(__file__).resolve().parent.parent
EVAL_PROMPTS = ROOT / "data" / "eval" / "prompts.jsonl"
LANGUAGES = ("ru", "en")
SIDES = ("adapter", "base")  # each register's prompt answered by its adapter, and by the base model without one
QUALITY_TARGETS = {
    "judge_fidelity_min": 0.90,
    "finished_min": 0.98,
    "language_match_min": 0.99,
    "invented_sources_max": 0,
    "loop_rate_max": 0.01,
    "relevance_not_below_base": True,
}


def eval_prompts(per_language: Optional[int] = None, path: Path = EVAL_PROMPTS) -> list[dict]:
    """The eval set's rows ``{id, lang, theme, text}`` in file order; with ``per_language`` the first that many
    of each language."""
    from scenestream.schemas.codec import read_jsonl

    rows = read_jsonl(path)
    if per_language is None:
        return rows
    taken: Counter = Counter()
    kept = []
    for row in rows:
        if taken[row["lang"]] < per_language:
            taken[row["lang"]] += 1
            kept.append(row)
    return kept


@dataclass(frozen=True)
class Asked:
    """One generation of the quality run: prompt ``row`` asked in ``register``, through ``side``."""

    register: str
    side: str  # "adapter" or "base"
    row: int  # index into the prompt rows
    request: Request


def quality_requests(scenes: Sequence[Scene], registers: Sequence[str]) -> list[Asked]:
    """Every scene asked in every register, as ``Decoder.requests`` asks a scene whose register is forced (the
    prompt ``build_prompt(scene, register, echoes)``), once with the register's adapter and once with the same
    prompt and no adapter (the base model)."""
    from scenestream.agents.decoder.engines import BASE, Request
    from scenestream.agents.decoder.prompt import build_prompt

    asked = []
    for register in registers:
        for row, scene in enumerate(scenes):
            forced = scene.model_copy(update={"force_register": register})
            echoes = [e for e in forced.echoes if isinstance(e, dict) and e.get("text")]
            prompt = build_prompt(forced, register, echoes)
            asked.append(Asked(register, "adapter", row, Request(prompt, register)))
            asked.append(Asked(register, "base", row, Request(prompt, BASE)))
    return asked


@dataclass(frozen=True)
class Scorers:
    """What reads the answers. The judge and the router each name the register a text speaks in; ``embed``
    gives L2-normalised rows (multilingual-e5, the scene builder's embedder); ``count_tokens`` an answer's
    length in the base model's tokens (None: the engine's generated-token count)."""

    judge: Callable[[list[str]], list[str]]
    router: Callable[[list[str]], list[str]]
    embed: Callable[[list[str]], Any]
    count_tokens: Optional[Callable[[str], int]] = None


def _share(flags: Sequence[bool]) -> Optional[float]:
    return round(sum(flags) / len(flags), 4) if flags else None


def _mean(values: Sequence[float], digits: int = 4) -> Optional[float]:
    return round(statistics.fmean(values), digits) if values else None


def answer_checks(text: str, lang: str) -> dict:
    """The cheap checks of one answer (``agents/decoder/answers.py``); an empty answer is unfinished, in no
    language, and loops not."""
    from scenestream.agents.decoder.answers import finished, invented_sources, language_of, loops

    empty = not text.strip()
    return {
        "empty": empty,
        "finished": not empty and finished(text),
        "language": None if empty else language_of(text),
        "language_match": not empty and language_of(text) == lang,
        "invented_sources": invented_sources(text),
        "loops": loops(text),
    }


def quality_cell(scored: Sequence[dict], register: str, max_new_tokens: int) -> dict:
    """The figures of one group of scored answers to ``register``'s prompts (one register, one side, one
    language or both). Fidelity: the share the judge (or the router) reads as ``register``, an empty answer
    a miss; relevance: the mean cosine of answer and prompt in e5, an empty answer 0."""
    n = len(scored)
    invented = [s for s in scored if s["invented_sources"]]
    return {
        "n": n,
        "judge_fidelity": _share([not s["empty"] and s["judge"] == register for s in scored]),
        "judge_read_misses_as": dict(Counter(s["judge"] for s in scored if s["judge"] != register).most_common()),
        "finished": _share([s["finished"] for s in scored]),
        "language_match": _share([s["language_match"] for s in scored]),
        "invented_sources": sum(len(s["invented_sources"]) for s in scored),
        "invented_sources_rate": _share([bool(s["invented_sources"]) for s in scored]),
        "invented_sources_examples": [" | ".join(s["invented_sources"]) for s in invented[:5]],
        "loop_rate": _share([s["loops"] for s in scored]),
        "tokens_mean": _mean([s["tokens"] for s in scored], 1),
        "tokens_median": statistics.median([s["tokens"] for s in scored]) if scored else None,
        "at_token_limit": _share([s["generated_tokens"] >= max_new_tokens for s in scored]),
        "stopped_at_sentence": _share([s["finish_reason"] == "sentence" for s in scored]),
        "trimmed": _share([s["trimmed"] for s in scored]),
        "closed": _share([s["closed"] for s in scored]),
        "relevance": _mean([s["relevance"] for s in scored]),
        "empty_answers": sum(s["empty"] for s in scored),
        "router_fidelity": _share([not s["empty"] and s["router"] == register for s in scored]),
        "router_read_misses_as": dict(Counter(s["router"] for s in scored if s["router"] != register).most_common()),
    }


def check_quality_targets(per_register: dict, targets: dict = QUALITY_TARGETS) -> dict:
    """Each target for each register and language: the adapter's figure, the base model's beside it, and
    whether it is met; ``missed`` lists every one that is not."""
    checks: dict = {}
    missed = []
    for register, sides in per_register.items():
        for lang in [k for k in sides["adapter"] if k in LANGUAGES]:
            a, b = sides["adapter"][lang], sides["base"][lang]
            figures = {
                "judge_fidelity": (a["judge_fidelity"], f"≥ {targets['judge_fidelity_min']}"),
                "finished": (a["finished"], f"≥ {targets['finished_min']}"),
                "language_match": (a["language_match"], f"≥ {targets['language_match_min']}"),
                "invented_sources": (a["invented_sources"], f"≤ {targets['invented_sources_max']}"),
                "loop_rate": (a["loop_rate"], f"≤ {targets['loop_rate_max']}"),
                "relevance": (a["relevance"], f"≥ base {b['relevance']}"),
            }
            met = {
                "judge_fidelity": a["judge_fidelity"] >= targets["judge_fidelity_min"],
                "finished": a["finished"] >= targets["finished_min"],
                "language_match": a["language_match"] >= targets["language_match_min"],
                "invented_sources": a["invented_sources"] <= targets["invented_sources_max"],
                "loop_rate": a["loop_rate"] <= targets["loop_rate_max"],
                "relevance": a["relevance"] >= b["relevance"],
            }
            cell = checks.setdefault(register, {}).setdefault(lang, {})
            for name, (value, target) in figures.items():
                cell[name] = {"adapter": value, "base": b[name], "target": target, "met": bool(met[name])}
                if not met[name]:
                    missed.append(f"{register} {lang} {name}: {value} (target {target}; base {b[name]})")
    return {"thresholds": dict(targets), "per_register": checks, "missed": missed, "all_met": not missed}


def measure_quality(
    engine,
    prompts: Sequence[dict],
    asked: Sequence[Asked],
    scorers: Scorers,
    settings: Optional[Settings] = None,
    batch: int = 64,
    on_generated: Callable[[int], None] = lambda n: None,
    include_answers: bool = False,
) -> dict:
    """Answer every request of ``asked`` once, in batches of ``batch``, in order, through the decoder's answer
    policy (:meth:`Decoder.answer <scenestream.agents.decoder.transform.Decoder.answer>`: the text cut where the
    model starts a new block, stopped at a sentence end once ``answer_min_tokens`` long, trimmed to its last
    complete sentence at the token limit (a first sentence to its last clause, closed), closed with a full stop
    where the model ended it without one; never shorter than what would have streamed), the base
    model's answers exactly as the adapters'; then read every answer: the judge, the router, e5 relevance, the
    cheap checks; aggregate per register, side and language.
    Nothing is chosen, retried or dropped on what any reader says: each asked request is one answer in the
    figures. ``settings`` (None: the process's) are the generation defaults and the answer policy's."""
    from scenestream.agents.decoder.prompt import clean_answer
    from scenestream.agents.decoder.transform import Decoder

    settings = settings or get_settings()
    max_new_tokens = settings.max_new_tokens
    decoder = Decoder(engine, settings=settings)
    started = time.perf_counter()
    answered: list = []
    for i in range(0, len(asked), batch):
        chunk = asked[i : i + batch]
        answered += decoder.answer([a.request for a in chunk])
        on_generated(len(chunk))
    if len(answered) != len(asked):
        raise RuntimeError(f"the engine returned {len(answered)} answers to {len(asked)} requests")
    wall = time.perf_counter() - started
    generations = [gen for gen, _text in answered]
    texts = [text for _gen, text in answered]

    # read only after everything was generated: the readers cannot steer what is generated
    judged = list(scorers.judge(texts))
    routed = list(scorers.router(texts))
    vectors = scorers.embed(texts)
    prompt_vectors = scorers.embed([row["text"] for row in prompts])
    cleaned = [clean_answer(gen.text) for gen in generations]  # the engine's text cut at the next block only
    scored = []
    for k, (a, text, gen) in enumerate(zip(asked, texts, generations)):
        row = prompts[a.row]
        checks = answer_checks(text, row["lang"])
        relevance = 0.0 if checks["empty"] else float(vectors[k] @ prompt_vectors[a.row])
        scored.append(
            {
                "register": a.register,
                "side": a.side,
                "id": row["id"],
                "lang": row["lang"],
                "served_by": gen.adapter,
                "answer": text,
                **checks,
                "judge": judged[k],
                "router": routed[k],
                "relevance": round(relevance, 4),
                "generated_tokens": gen.completion_tokens,
                "tokens": scorers.count_tokens(text) if scorers.count_tokens else gen.completion_tokens,
                "finish_reason": gen.finish_reason,
                # shortened to a complete sentence, or closed with a full stop where the model ended without one
                "trimmed": text != cleaned[k] and cleaned[k].startswith(text),
                "closed": not cleaned[k].startswith(text),
            }
        )

    per_register: dict = {}
    for register in dict.fromkeys(a.register for a in asked):
        sides: dict = {}
        for side in SIDES:
            group = [s for s in scored if s["register"] == register and s["side"] == side]
            sides[side] = {"all": quality_cell(group, register, max_new_tokens)}
            for lang in LANGUAGES:
                part = [s for s in group if s["lang"] == lang]
                if part:
                    sides[side][lang] = quality_cell(part, register, max_new_tokens)
            sides[side]["served_by"] = sorted({s["served_by"] for s in group})
            sides[side]["example"] = group[0]["answer"][:300] if group else ""
        sides["relevance_adapter_minus_base"] = {
            key: round(sides["adapter"][key]["relevance"] - sides["base"][key]["relevance"], 4)
            for key in sides["adapter"]
            if isinstance(sides["adapter"][key], dict)
        }
        per_register[register] = sides
    overall = {}
    for side in SIDES:
        group = [s for s in scored if s["side"] == side]
        overall[side] = {
            "judge_fidelity": _share([not s["empty"] and s["judge"] == s["register"] for s in group]),
            "router_fidelity": _share([not s["empty"] and s["router"] == s["register"] for s in group]),
            "finished": _share([s["finished"] for s in group]),
            "language_match": _share([s["language_match"] for s in group]),
            "invented_sources": sum(len(s["invented_sources"]) for s in group),
            "loop_rate": _share([s["loops"] for s in group]),
            "relevance": _mean([s["relevance"] for s in group]),
            "tokens_mean": _mean([s["tokens"] for s in group], 1),
            "stopped_at_sentence": _share([s["finish_reason"] == "sentence" for s in group]),
            "trimmed": _share([s["trimmed"] for s in group]),
            "closed": _share([s["closed"] for s in group]),
        }
    generated = sum(g.completion_tokens for g in generations)
    report = {
        "generation": {
            "answers": len(generations),
            "answer_policy": "the decoder's (Decoder.answer): stop at a sentence end once answer_min_tokens long, "
            "trim to the last complete sentence at max_new_tokens, close with a full stop an answer the model ended "
            "without one; adapters and base model alike",
            "batch": batch,
            "generated_tokens": generated,
            "wall_s": round(wall, 1),
            "tokens_per_s": round(generated / wall, 1) if wall > 0 else None,
        },
        "per_register": per_register,
        "overall": overall,
        "targets": check_quality_targets(per_register),
    }
    if include_answers:
        report["answers"] = [{k: v for k, v in s.items() if k not in ("empty",)} for s in scored]
    return report


def real_scorers(engine, settings: Settings) -> Scorers:
    """The style judge (``ops/judge.py``), the scene builder's router, its e5 embedder and the engine's
    tokenizer."""
    from scenestream.agents.scene.embedder import E5Embedder
    from scenestream.ops.judge import Judge
    from scenestream.training.examples import router_reading

    judge = Judge.load()
    e5 = E5Embedder()
    tokenizer = getattr(engine, "tokenizer", None)

    def judged(texts: list[str]) -> list[str]:
        return [r for i in range(0, len(texts), 64) for r in judge.predict(texts[i : i + 64])]

    def routed(texts: list[str]) -> list[str]:
        return router_reading(texts, settings)[0]

    def embedded(texts: list[str]):
        import numpy as np

        return np.vstack([e5.embed(texts[i : i + 64]) for i in range(0, len(texts), 64)])

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0

    return Scorers(judged, routed, embedded, count if tokenizer is not None else None)


def run_quality(
    per_language: Optional[int] = None,
    progress: bool = True,
    registers: tuple[str, ...] = REGISTERS,
    batch: int = 64,
    include_answers: bool = False,
    heldout: bool = True,
) -> dict:
    """``bench quality``: every prompt of the eval set (``data/eval/prompts.jsonl``, never trained on) asked
    in every register of ``registers``, answered by the register's adapter and by the base model with the same
    prompt, on the default engine (``make_engine``), both through the decoder's answer policy; every answer read
    by the style judge (``ops/judge.py``), the cheap checks (``agents/decoder/answers.py``), e5 relevance to its
    prompt and the scene builder's router (labelled as the router's). Kept from before, on the test split of
    ``data/decoder/``: the held-out loss of each adapter and of the base model (``heldout``), and the router on
    the reference answers."""
    from scenestream.agents.decoder.answers import SOURCE_PATTERNS
    from scenestream.agents.decoder.base_model import base_model_path
    from scenestream.agents.decoder.engines import make_engine
    from scenestream.offline import scenes_for
    from scenestream.ops.judge import MANIFEST
    from scenestream.schemas.records import RawText
    from scenestream.training.examples import load_examples, router_reading

    unknown = sorted(set(registers) - set(REGISTERS))
    if unknown:  # before the engine loads
        raise ValueError(f"unknown register(s) {unknown}; the registers are {list(REGISTERS)}")
    settings = get_settings()

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    prompts = eval_prompts(per_language)
    say(f"quality: {len(prompts)} eval prompts → scenes …")
    scenes = scenes_for(
        [RawText(message_id=row["id"], session_id="bench-quality", text=row["text"]) for row in prompts], settings
    )
    asked = quality_requests(scenes, registers)
    say("quality: loading the engine …")
    engine = make_engine(settings)
    scorers = real_scorers(engine, settings)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"quality: answering ({engine.name})", total=len(asked))
            measured = measure_quality(
                engine,
                prompts,
                asked,
                scorers,
                settings,
                batch=batch,
                on_generated=lambda n: bar.advance(task, n),
                include_answers=include_answers,
            )
    finally:
        adapters = dict(engine.adapters)
        engine.close()
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    report: dict = {
        "benchmark": "quality",
        "eval_set": str(EVAL_PROMPTS.relative_to(ROOT)),
        "prompts": {"n": len(prompts), **dict(Counter(row["lang"] for row in prompts))},
        "engine": engine.name,
        "model": engine.model,
        "adapters": sorted(adapters),
        "settings": {
            "max_new_tokens": settings.max_new_tokens,
            "answer_min_tokens": settings.answer_min_tokens,
            "temperature": settings.temperature,
            "repetition_penalty": settings.repetition_penalty,
        },
        "judge": {
            "what": "style judge independent of the router: char 2-5 + word 1-2 TF-IDF, logistic regression "
            "(ops/judge.py, built by python -m scenestream.ops.build_judge from data/judge/style.jsonl)",
            "held_out_accuracy": manifest["held_out"]["overall"],
            "held_out": manifest["held_out"],
            "style_set_sha256": manifest["sha256"],
        },
        "relevance": "cosine of answer and prompt in multilingual-e5-small (agents/scene/embedder.py, the scene "
        "builder's), 'query: ' on both sides; an empty answer counts 0",
        "router": "router_fidelity: the share the scene builder's register router (the one that chose training "
        "examples) reads as the register; not independent of training",
        "invented_source_patterns": SOURCE_PATTERNS,
        **measured,
    }
    for register in registers:
        rows = load_examples(register, "test")
        read, _weights = router_reading([row["answer"] for row in rows], settings)
        report["per_register"][register]["router_reference"] = {
            "n": len(rows),
            "router_fidelity": _share([r == register for r in read]),
        }
        if heldout and register in adapters:
            say(f"quality: {register} held-out loss (test split of data/decoder) …")
            from scenestream.training.train import heldout_losses

            losses = heldout_losses(base_model_path(settings), adapters[register], register)
            report["per_register"][register]["heldout_loss"] = {
                "adapter": losses["heldout_loss_adapter"],
                "base": losses["heldout_loss_base"],
                "test_examples": losses["test_examples"],
            }
    return report


def _rss_mb() -> float:
    """Resident memory of this process and its children (vLLM's engine core), in MiB."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return round(total / 2**20, 1)


def run_e2e_bench(
    rates: tuple[float, ...] = (1.0, 4.0),
    seconds: float = 20.0,
    asks: int = 3,
    progress: bool = True,
    modes: tuple[str, ...] = ("continuous", "batch"),
    overload_seconds: float = 0.0,
    overload_rate: float = 4.0,
) -> dict:
    """p50/p99 from publishing to raw-text to the first streamed piece of the answer (the first partial
    lora-output arriving at the client) and to the full answer, on the embedded stack, for each decoder mode
    side by side (a worker of its own per mode, on one broker); then ``asks`` one-at-a-time ``scenestream
    ask`` calls through the first mode's stack (in-process and as the CLI); then, with ``overload_seconds``,
    the first mode offered ``overload_rate`` for that long with the memory of the worker (and its engine's
    process) sampled every 5 s, and how many scenes wait in the broker at the end."""
    import asyncio
    import os
    import subprocess
    import uuid

    from scenestream.agents.decoder.engines import choose_engine_name
    from scenestream.ask import ask_once
    from scenestream.broker import broker_for
    from scenestream.client import Watcher, publish, publish_paced, raw_text
    from scenestream.runtime import running_worker, select_stages
    from scenestream.topics import LORA_OUTPUTS, RAW_TEXT, SCENES, TOKENS
    from scenestream.training.examples import load_examples

    texts = [row["text"] for r in REGISTERS for row in load_examples(r, "test")]

    def say(msg):
        if progress:
            print(msg, file=sys.stderr, flush=True)

    def pct(values, q):
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None

    async def one_rate(s, rate: float) -> dict:
        n = max(1, int(rate * seconds))
        watcher = Watcher(
            s, {LORA_OUTPUTS.full_name(s): LORA_OUTPUTS.schema}, [d.dlq_name(s) for d in (RAW_TEXT, TOKENS, SCENES)]
        )
        await watcher.start()
        sent: dict[str, float] = {}
        records = [raw_text(texts[i % len(texts)], session_id=f"e2e-{i % 8}") for i in range(n)]

        started = time.time()
        task = asyncio.create_task(publish_paced(s, records, rate, sent, stamp=True))
        first, full, pieces, queue, tokens = [], [], [], [], 0
        for record in records:
            got = await watcher.wait(record.message_id, LORA_OUTPUTS.full_name(s), timeout=600)
            out = got["lora_output"]
            full.append((time.time() - sent[record.message_id]) * 1000)
            pieces.append(out.seq)
            tokens += out.completion_tokens
            if "queue" in out.timings_ms:
                queue.append(out.timings_ms["queue"])
            if record.message_id in watcher.first_partial:
                first.append((watcher.first_partial[record.message_id] - sent[record.message_id]) * 1000)
        wall = time.time() - started
        await task
        await watcher.stop()
        return {
            "rate_rps": rate,
            "requests": n,
            "streamed_answers": len(first),
            "partials_per_answer_p50": pct(pieces, 0.5),
            "first_token_p50_ms": pct(first, 0.5),
            "first_token_p99_ms": pct(first, 0.99),
            "answer_p50_ms": pct(full, 0.5),
            "answer_p99_ms": pct(full, 0.99),
            "decoder_queue_p50_ms": pct(queue, 0.5),
            "tokens_per_s": round(tokens / wall, 1),
            "rss_mb": _rss_mb(),
        }

    async def overload(s) -> dict:
        """``overload_rate`` for ``overload_seconds``; memory every 5 s; the scenes still waiting at the end."""
        from scenestream.kafka import partitions_of, start_reader

        n = int(overload_rate * overload_seconds)
        records = [raw_text(texts[i % len(texts)], session_id=f"over-{i % 8}") for i in range(n)]
        samples = []
        start = time.time()
        next_sample = start
        for i, record in enumerate(records):
            if time.time() >= next_sample:
                samples.append({"t_s": round(time.time() - start, 1), "rss_mb": _rss_mb()})
                next_sample += 5.0
            delay = start + i / overload_rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await publish(s, [record])
        samples.append({"t_s": round(time.time() - start, 1), "rss_mb": _rss_mb()})
        reader = await start_reader(s)
        try:
            from aiokafka import TopicPartition

            topic = LORA_OUTPUTS.full_name(s)
            tps = [TopicPartition(topic, p) for p in sorted(await partitions_of(reader, topic) or ())]
            answered_offsets = sum((await reader.end_offsets(tps)).values()) if tps else None
        finally:
            await reader.stop()
        rss = [sample["rss_mb"] for sample in samples]
        return {
            "rate_rps": overload_rate,
            "seconds": overload_seconds,
            "published": n,
            "rss_mb_first": rss[0],
            "rss_mb_max": max(rss),
            "rss_mb_last": rss[-1],
            "rss_samples": samples,
            "lora_output_records_at_end": answered_offsets,
        }

    def cli_ask(s, text: str) -> tuple[float, dict]:
        env = {**os.environ, "SCENESTREAM_BROKER": s.broker, "SCENESTREAM_TOPIC_PREFIX": s.topic_prefix}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "scenestream", "ask", "--json", text],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        wall = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise RuntimeError(f"scenestream ask failed: {done.stderr.strip()[-500:]}")
        return wall, json.loads(done.stdout)

    async def through_running(s) -> dict:
        inproc, cli = [], []
        for i in range(asks):
            started = time.perf_counter()
            result = await ask_once(texts[(7 * i) % len(texts)], settings=s, timeout=600)
            inproc.append(
                {
                    "ask_ms": (time.perf_counter() - started) * 1000,
                    "generate_ms": result["output"].timings_ms["generate"],
                }
            )
            wall, result = await asyncio.to_thread(cli_ask, s, texts[(7 * i + 3) % len(texts)])
            cli.append({"ask_ms": wall, "generate_ms": result["output"]["timings_ms"]["generate"]})

        def summary(rows):
            ask = statistics.median(r["ask_ms"] for r in rows)
            gen = statistics.median(r["generate_ms"] for r in rows)
            return {
                "calls": len(rows),
                "ask_p50_ms": round(ask, 1),
                "generate_p50_ms": round(gen, 1),
                "ask_over_generate": round(ask / gen, 2),
            }

        return {"in_process": summary(inproc), "cli": summary(cli)}

    async def one_mode(s, mode: str, first_mode: bool) -> dict:
        report: dict = {"mode": mode}
        async with running_worker(s, select_stages(None, s)):
            say(f"e2e bench [{mode}]: one warm-up answer (group joins, engine's first batch; not counted) …")
            await ask_once(texts[0], settings=s, timeout=600)
            runs = []
            for rate in rates:
                say(f"e2e bench [{mode}]: {rate} req/s for {seconds:.0f}s …")
                runs.append(await one_rate(s, rate))
            report["runs"] = runs
            if asks and first_mode:
                say(f"e2e bench [{mode}]: {asks} asks one at a time through the running stack (in-process, CLI) …")
                report["ask_through_running_stack"] = await through_running(s)
            if overload_seconds and first_mode:
                say(f"e2e bench [{mode}]: overload, {overload_rate} req/s for {overload_seconds:.0f}s …")
                report["overload"] = await overload(s)
        return report

    async def main(s) -> dict:
        by_mode = {}
        for i, mode in enumerate(modes):
            ms = s.model_copy(update={"decoder_mode": mode, "topic_prefix": f"e2e-{uuid.uuid4().hex[:6]}-"})
            by_mode[mode] = await one_mode(ms, mode, i == 0)
        report: dict = {"modes": by_mode}
        if {"continuous", "batch"} <= set(by_mode):
            ratios = []
            for cont, batch in zip(by_mode["continuous"]["runs"], by_mode["batch"]["runs"]):

                def ratio(key, cont=cont, batch=batch):
                    a, b = batch.get(key), cont.get(key)
                    return round(a / b, 2) if a and b else None

                ratios.append(
                    {
                        "rate_rps": cont["rate_rps"],
                        "first_token_p50_batch_over_continuous": ratio("first_token_p50_ms"),
                        "first_token_p99_batch_over_continuous": ratio("first_token_p99_ms"),
                        "answer_p50_batch_over_continuous": ratio("answer_p50_ms"),
                    }
                )
            report["ratios"] = ratios
        return report

    settings = get_settings()
    with broker_for(settings) as s:
        return {
            "benchmark": "e2e",
            "engine": choose_engine_name(s),
            "max_new_tokens": s.max_new_tokens,
            "stream_interval_ms": s.stream_interval_ms,
            "decoder_max_inflight": s.decoder_max_inflight,
            **asyncio.run(main(s)),
        }
