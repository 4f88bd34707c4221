"""Decoder benchmarks and quality, on scenes the scene builder makes from held-out texts.

    scenestream bench decoder [--json]     # (a) one request at a time, (b) batched, (c) vLLM multi-LoRA
    scenestream bench quality [--json]     # style fidelity and held-out loss, adapters vs the base model

The same scenes (64 by default, spread evenly over the four registers, from
the *test* split of ``data/decoder/``) go through every engine in one run;
tokens/s counts generated tokens over wall time; time to first token is the
median over requests.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from typing import Optional

from scenestream.schemas.records import REGISTERS
from scenestream.settings import Settings, get_settings


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


def run_quality(per_register: int = 40, progress: bool = True, registers: tuple[str, ...] = REGISTERS) -> dict:
    """Style fidelity (router agreement) and held-out answers, adapters vs base, on the test split; and the
    router on the test split's reference answers themselves ("reference": what plain imitation reaches).
    ``misread_as`` counts the registers the router gave the answers it did not assign to ``register``;
    ``heldout_loss``: the test split's answers under the adapter and under the base model (as training
    reports it, recomputed here for the adapters the engine serves)."""
    from scenestream.agents.decoder.base_model import base_model_path
    from scenestream.agents.decoder.engines import BASE, Request, TransformersEngine
    from scenestream.agents.decoder.prompt import clean_answer
    from scenestream.training.examples import load_examples, prompts_for, router_reading
    from scenestream.training.train import heldout_losses

    unknown = sorted(set(registers) - set(REGISTERS))
    if unknown:  # before the engine loads
        raise ValueError(f"unknown register(s) {unknown}; the registers are {list(REGISTERS)}")
    settings = get_settings()
    engine = TransformersEngine(settings)
    base = base_model_path(settings)
    report: dict = {"benchmark": "quality", "adapters": sorted(engine.adapters), "per_register": {}}

    def routed(answers: list[str], register: str) -> dict:
        """The share of ``answers`` the router assigns to ``register`` (an empty answer counts as a miss)
        and what it read the others as."""
        read, _weights = router_reading(answers)
        return {
            "style_fidelity": round(sum(r == register for r in read) / len(read), 4),
            "misread_as": dict(Counter(r for r in read if r != register).most_common()),
        }

    for register in registers:
        rows = load_examples(register, "test")[:per_register]
        prompts = [p for p, _a in prompts_for(rows, register)]
        fidelity = {}
        for adapter in (register, BASE):
            if progress:
                print(f"quality: {register} answered by {adapter} …", file=sys.stderr, flush=True)
            answers = []
            for i in range(0, len(prompts), 16):
                answers += [
                    clean_answer(g.text) for g in engine.generate([Request(p, adapter) for p in prompts[i : i + 16]])
                ]
            fidelity[adapter] = {
                **routed(answers, register),
                "empty_answers": sum(1 for a in answers if not a.strip()),
                "example": answers[0][:200],
            }
        report["per_register"][register] = {
            "adapter": fidelity[register],
            "base": fidelity[BASE],
            "reference": routed([row["answer"] for row in rows], register),
        }
        if register in engine.adapters:
            if progress:
                print(f"quality: {register} held-out loss …", file=sys.stderr, flush=True)
            losses = heldout_losses(base, engine.adapters[register], register)
            report["per_register"][register]["adapter"]["heldout_loss"] = losses["heldout_loss_adapter"]
            report["per_register"][register]["base"]["heldout_loss"] = losses["heldout_loss_base"]
    report["targets"] = {"style_fidelity_min": 0.9}
    return report


def run_e2e_bench(
    rates: tuple[float, ...] = (1.0, 4.0), seconds: float = 20.0, asks: int = 3, progress: bool = True
) -> dict:
    """p50/p99 from publishing to raw-text to the first streamed piece of the answer (the first partial
    lora-output arriving at the client) and to the full answer, on the embedded stack; then ``asks``
    one-at-a-time ``scenestream ask`` calls through the stack already up (in-process and as the CLI)."""
    import asyncio
    import os
    import subprocess
    import uuid

    from scenestream.agents.decoder.engines import choose_engine_name
    from scenestream.ask import ask_once
    from scenestream.broker import broker_for
    from scenestream.client import Watcher, publish, raw_text
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

        async def producer():
            start = time.time()
            for i, record in enumerate(records):
                delay = start + i / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[record.message_id] = time.time()
                await publish(s, [record.model_copy(update={"ts_ms": int(sent[record.message_id] * 1000)})])

        task = asyncio.create_task(producer())
        first, full, pieces = [], [], []
        for record in records:
            got = await watcher.wait(record.message_id, LORA_OUTPUTS.full_name(s), timeout=600)
            out = got["lora_output"]
            full.append((time.time() - sent[record.message_id]) * 1000)
            pieces.append(out.seq)
            if record.message_id in watcher.first_partial:
                first.append((watcher.first_partial[record.message_id] - sent[record.message_id]) * 1000)
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

    async def main(s) -> dict:
        report = {}
        async with running_worker(s, select_stages(None, s)):
            say("e2e bench: one warm-up answer (group joins, engine's first batch; not counted) …")
            await ask_once(texts[0], settings=s, timeout=600)
            runs = []
            for rate in rates:
                say(f"e2e bench: {rate} req/s for {seconds:.0f}s …")
                runs.append(await one_rate(s, rate))
            report["runs"] = runs
            if asks:
                say(f"e2e bench: {asks} asks one at a time through the running stack (in-process, CLI) …")
                report["ask_through_running_stack"] = await through_running(s)
        return report

    settings = get_settings()
    with broker_for(settings) as s:
        s = s.model_copy(update={"topic_prefix": f"e2e-{uuid.uuid4().hex[:6]}-"})
        return {
            "benchmark": "e2e",
            "engine": choose_engine_name(s),
            "max_new_tokens": s.max_new_tokens,
            "stream_interval_ms": s.stream_interval_ms,
            **asyncio.run(main(s)),
        }
