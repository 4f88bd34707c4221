"""Mixed-adapter batches on the real base model: PEFT's ``adapter_names`` against the stacked LoRA, side by side.

    scenestream bench lora [--json] [--prompts 16] [--new-tokens 40] [--repeats 3] [--kernels peft,stacked]

The same held-out prompts (registers round-robin, every fifth row the base model) go through one
transformers engine per LoRA kernel (``SCENESTREAM_LORA_KERNEL``), in one batch, greedy, with the
engine's repetition penalty. The kernels take turns, one warm-up batch each first (not counted);
tokens/s is generated tokens over wall time, median over the repeats. Compiled decode follows
``SCENESTREAM_COMPILE`` (auto: only with CUDA).

The greedy answers of every kernel are compared with the first kernel's, twice:

* in bf16, the engine's dtype. Two correct kernels need not agree token for token there: the adapter
  product runs in float32 in both (as PEFT runs it), but as matrix products of other shapes, so its
  last bits differ, and now and then one bf16 rounding of the sum with it. Where a row's answer
  differs, the scores of the step where it first differs are shown: the reference's margin between
  its two best tokens, and how far the two kernels' scores for those tokens are apart.
* in float32 (the same engines, converted), where such rounding stays far below any margin: there
  they must agree.

A control shows what bf16 allows: the first kernel against itself, each request alone instead of in
the batch (no left padding, other matrix shapes).
"""

from __future__ import annotations

import statistics
import sys
import time

from scenestream.schemas.records import REGISTERS


def mixed_requests(n: int) -> list:
    """``n`` held-out prompts: registers round-robin, every fifth row answered by the base model."""
    from scenestream.agents.decoder.engines import BASE, Request
    from scenestream.training.examples import load_examples, prompts_for

    plan = [(REGISTERS + (BASE,))[i % (len(REGISTERS) + 1)] for i in range(n)]
    requests = []
    for register in REGISTERS + (BASE,):
        rows = [i for i, r in enumerate(plan) if r == register]
        source = register if register != BASE else REGISTERS[0]  # base rows get a poet's scene prompt
        pool = load_examples(source, "test")
        prompts = [p for p, _a in prompts_for([pool[k % len(pool)] for k in range(len(rows))], source)]
        requests += [(i, Request(prompt=p, adapter=register)) for i, p in zip(rows, prompts)]
    return [r for _i, r in sorted(requests, key=lambda pair: pair[0])]


def run_lora_bench(
    n: int = 16,
    new_tokens: int = 40,
    repeats: int = 3,
    kernels: tuple[str, ...] = ("peft", "stacked"),
    progress: bool = True,
) -> dict:
    from scenestream.agents.decoder.engines import TransformersEngine
    from scenestream.settings import get_settings

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    settings = get_settings().model_copy(update={"max_new_tokens": new_tokens, "temperature": 0.0})
    say(f"lora bench: {n} held-out prompts (scene builder) …")
    requests = mixed_requests(n)
    engines = {}
    for kernel in kernels:
        say(f"lora bench: loading the engine with SCENESTREAM_LORA_KERNEL={kernel} and one warm-up batch …")
        engine = TransformersEngine(settings.model_copy(update={"lora_kernel": kernel}))
        started = time.perf_counter()
        engine.generate(requests)
        engines[kernel] = (engine, round(time.perf_counter() - started, 2))
    import torch

    runs: dict[str, list] = {k: [] for k in kernels}
    outputs: dict[str, list] = {}
    for r in range(repeats):
        for kernel in kernels:
            say(f"lora bench: repeat {r + 1}/{repeats}, {kernel} …")
            started = time.perf_counter()
            generations = engines[kernel][0].generate(requests)
            wall = time.perf_counter() - started
            tokens = sum(g.completion_tokens for g in generations)
            runs[kernel].append({"tokens": tokens, "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 1)})
            texts = [g.text for g in generations]
            if outputs.setdefault(kernel, texts) != texts:
                raise RuntimeError(f"{kernel}: greedy answers changed between repeats of the same batch")
    reference = kernels[0]
    report: dict = {
        "benchmark": "lora",
        "prompts": n,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "batch": [r.adapter for r in requests],
        "device": engines[reference][0].device,
        "threads": torch.get_num_threads(),
        "compiled_decode": {k: engines[k][0].compiled for k in kernels},
        "kernels": {},
    }
    for kernel in kernels:
        same = [a == b for a, b in zip(outputs[kernel], outputs[reference])]
        report["kernels"][kernel] = {
            "tokens_per_s_median": statistics.median(run["tokens_per_s"] for run in runs[kernel]),
            "warmup_s": engines[kernel][1],
            "runs": runs[kernel],
            f"answers_identical_to_{reference}": f"{sum(same)}/{len(same)}",
        }
    base = report["kernels"][reference]["tokens_per_s_median"]
    for kernel in kernels[1:]:
        report[f"speedup_{kernel}_over_{reference}"] = round(report["kernels"][kernel]["tokens_per_s_median"] / base, 2)
    report["example"] = {"adapter": requests[0].adapter, "answer": outputs[reference][0][:200]}
    if any(engine.compiled for engine, _warm in engines.values()):
        report["answers_analysis"] = "skipped: compiled engines pad their batches and hold bf16 static caches"
        return report
    say(f"lora bench: control, {reference} one request at a time …")
    alone = [engines[reference][0].generate([r])[0].text for r in requests]
    same = sum(a == b for a, b in zip(alone, outputs[reference]))
    report[f"bf16_control_{reference}_one_at_a_time_identical_to_batched"] = f"{same}/{len(requests)}"
    differing = [k for k in kernels[1:] if outputs[k] != outputs[reference]]
    if differing:
        say("lora bench: where the bf16 answers differ, the scores of the first differing step …")
        ref_tokens, ref_scores = _greedy_with_scores(engines[reference][0], requests, new_tokens)
        for kernel in differing:
            tokens, scores = _greedy_with_scores(engines[kernel][0], requests, new_tokens)
            report["kernels"][kernel]["bf16_divergences"] = _divergences(
                requests, ref_tokens, ref_scores, tokens, scores, engines[reference][0].tokenizer
            )
    say("lora bench: the same batch in float32 …")
    float32 = {}
    for kernel in kernels:
        engine = engines[kernel][0]
        engine.net.to(torch.float32)
        float32[kernel] = [g.text for g in engine.generate(requests)]
    for kernel in kernels:
        same = sum(a == b for a, b in zip(float32[kernel], float32[reference]))
        report["kernels"][kernel][f"float32_answers_identical_to_{reference}"] = f"{same}/{len(requests)}"
    return report


def _greedy_with_scores(engine, requests, new_tokens: int):
    """The engine's batch, built as its ``generate`` builds it, through the model's greedy ``generate`` with the
    scores kept: (new tokens per row, the scores of each step [rows, vocab], after the repetition penalty)."""
    import torch

    from scenestream.agents.decoder.base_model import encode_prompt
    from scenestream.agents.decoder.engines import BASE, served_adapter

    encoded = [encode_prompt(engine.tokenizer, r.prompt) for r in requests]
    names = [served_adapter(engine.adapters, r.adapter) for r in requests]
    width = max(map(len, encoded))
    pad = engine.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=engine.device)
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=engine.device)
    kwargs = {"adapter_names": ["__base__" if n == BASE else n for n in names]} if engine.lora_kernel == "peft" else {}
    with torch.inference_mode():
        if engine.lora is not None:
            engine.lora.set_slots(names)
        out = engine.net.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            pad_token_id=pad,
            do_sample=False,
            repetition_penalty=engine.settings.repetition_penalty,
            output_scores=True,
            return_dict_in_generate=True,
            **kwargs,
        )
    return out.sequences[:, width:].tolist(), out.scores


def _divergences(requests, ref_tokens, ref_scores, tokens, scores, tokenizer) -> list[dict]:
    eos = tokenizer.eos_token_id
    rows = []
    for i, (a, b) in enumerate(zip(ref_tokens, tokens)):
        a = a[: a.index(eos) + 1] if eos in a else a
        b = b[: b.index(eos) + 1] if eos in b else b
        if a == b:
            continue
        step = next((t for t, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        if step >= min(len(ref_scores), len(scores)):
            rows.append({"row": i, "adapter": requests[i].adapter, "step": step, "note": "one answer ended first"})
            continue
        theirs, mine = ref_scores[step][i].float(), scores[step][i].float()
        top = theirs.topk(2)
        first, second = top.indices.tolist()
        rows.append(
            {
                "row": i,
                "adapter": requests[i].adapter,
                "step": step,
                "reference_tokens": [tokenizer.decode([first]), tokenizer.decode([second])],
                "reference_margin": round(float(top.values[0] - top.values[1]), 4),
                "kernel_margin_same_tokens": round(float(mine[first] - mine[second]), 4),
                "score_difference_max": round(float((theirs - mine).abs().max()), 4),
            }
        )
    return rows
