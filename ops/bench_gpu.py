"""GPU benchmark of the transformers engine's decode paths: PEFT against the stacked LoRA and compiled decode.

    scenestream bench gpu [--json] [--out FILE]     # CUDA only: refuses (exit 1) without it
    scenestream bench gpu --device cpu --small      # the same code on tiny sizes, on CPU (a unit test runs it)
    python -m scenestream.ops.bench_gpu --json      # the same, without the CLI

Gemma 3 270M's architecture (the provisioned base model's config.json when there is one, else the copy
below) with RANDOM weights in bf16, and four random rank-16 LoRA adapters on the seven projections the
shipped ones train, saved by PEFT and loaded both ways. Speed does not depend on what the weights say,
and nothing has to be carried to the GPU machine. In one run, side by side:

* (a)  PEFT, one request at a time (``adapter_names=[name]``), eager, dynamic cache;
* (a') the single-stream fast path: stacked LoRA, static KV cache, compiled decoding step (CUDA graphs);
* (b)  PEFT, one mixed-adapter batch (every adapter and the base, round-robin) through ``adapter_names``;
* (b') the same batch through the stacked LoRA, compiled; and the stacked LoRA eager, to tell the two
  gains apart;
* (base) the base model without LoRA on the same batch, eager and compiled;
* LoRA training tokens/s: a few PEFT training steps (bf16 autocast, AdamW), as ``scenestream train`` does.

Prompts are random token ids of one length, greedy decoding to exactly ``new_tokens`` (no EOS), no
repetition penalty. Tokens/s is generated tokens over wall time, median of ``repeats`` runs after one
warm-up run that is not counted; a compiled path's warm-up (compile and CUDA-graph capture) is reported
as ``warmup_s``. A correctness check compares the stacked LoRA's logits with PEFT's on the mixed batch
(and base rows with the base model). Ratios against the issue's targets close the report: single stream
at least 200 tokens/s; the mixed batch of 256 at most 2× slower than the base model (compiled against
compiled, and against the base model eager as the issue measured it). A section that fails is reported
with its error and the run goes on; the exit code is then 1. ``--out`` rewrites the report after every
section, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

# Copies of names declared elsewhere: importing them would pull in modules whose dependencies
# (msgpack, orjson) the GPU machine lacks; a unit test keeps the copies equal to the originals.
REGISTERS = ("poet", "logician", "body", "philosopher")  # scenestream.schemas.records.REGISTERS
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # train.LORA_TARGETS
DEFAULT_MODEL = "gemma-3-270m"  # base_model.DEFAULT_NAME

TARGETS = {"single_stream_tokens_per_s_min": 200.0, "mixed_batch_slowdown_vs_base_max": 2.0}

# Gemma 3 270M's config.json (as `scenestream setup` saves it), for machines without the provisioned model
GEMMA3_270M = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": None,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
    "final_logit_softcapping": None,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 640,
    "initializer_range": 0.02,
    "intermediate_size": 2048,
    "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 3,
    "max_position_embeddings": 32768,
    "num_attention_heads": 4,
    "num_hidden_layers": 18,
    "num_key_value_heads": 1,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_parameters": {
        "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    },
    "sliding_window": 512,
    "tie_word_embeddings": True,
    "use_bidirectional_attention": False,
    "use_cache": True,
    "vocab_size": 262144,
    "_sliding_window_pattern": 6,
}
# --small: the same architecture, tiny
SMALL_OVERRIDES = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "layer_types": ["sliding_attention", "full_attention"],
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "query_pre_attn_scalar": 32,
    "sliding_window": 16,
    "max_position_embeddings": 512,
}


@dataclass(frozen=True)
class Sizes:
    batch: int = 256  # the mixed-adapter batch
    prompt_tokens: int = 32
    new_tokens: int = 32
    warmup_tokens: int = 8  # a warm-up run's new tokens (same cache size: the same compiled graphs)
    single_requests: int = 4  # (a) and (a'): requests one at a time, per run
    repeats: int = 3
    rank: int = 16
    train_batch: int = 16
    train_seq: int = 256
    train_steps: int = 8


SMALL = Sizes(
    batch=5,
    prompt_tokens=6,
    new_tokens=4,
    warmup_tokens=3,
    single_requests=1,
    repeats=1,
    rank=4,
    train_batch=2,
    train_seq=16,
    train_steps=1,
)
RECOMPILE_LIMIT = 64  # dynamo's per-function limit counts every model compiled here together (default 8)


class BenchRefused(RuntimeError):
    """The bench cannot run as asked (no CUDA, sizes meant for a GPU on a CPU)."""


def model_config(small: bool, models_dir: Optional[Path] = None):
    """(Gemma3TextConfig, where it came from): the provisioned model's config.json if present, else the copy."""
    from transformers import Gemma3TextConfig

    found = Path(models_dir) / DEFAULT_MODEL / "config.json" if models_dir else None
    if found is not None and found.exists():
        values, source = json.loads(found.read_text()), str(found)
    else:
        values, source = dict(GEMMA3_270M), "built-in copy of gemma-3-270m config.json"
    for key in ("dtype", "torch_dtype", "transformers_version", "_model_name_or_path"):
        values.pop(key, None)
    if small:
        values.update(SMALL_OVERRIDES)
        source += ", shrunk (--small)"
    return Gemma3TextConfig(**values), source


def _default_models_dir() -> Optional[Path]:
    try:
        from scenestream.settings import get_settings

        return get_settings().models_dir
    except Exception as exc:  # settings that do not validate: the built-in config still works
        print(f"bench gpu: settings unreadable ({exc}); using the built-in Gemma 3 270M config", file=sys.stderr)
        return None


def random_adapters(model, folder: Path, rank: int, seed: int = 0) -> dict[str, Path]:
    """Four random LoRA adapters (one per register) saved by PEFT under ``folder``; ``model`` is left as it was."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=LORA_TARGETS,
        lora_dropout=0.0,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft = get_peft_model(copy.deepcopy(model), config, adapter_name=REGISTERS[0])
    for name in REGISTERS[1:]:
        peft.add_adapter(name, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # A and B both random, small, like a trained adapter's change
        for name, param in peft.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    peft.save_pretrained(folder)
    return {name: folder / name for name in REGISTERS}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(run: Callable[[int], int], sizes: Sizes, device: str) -> dict:
    """One warm-up run (not counted), then ``repeats`` runs; ``run(new_tokens)`` returns tokens generated."""
    started = time.perf_counter()
    run(sizes.warmup_tokens)
    _sync(device)
    warmup = time.perf_counter() - started
    rates = []
    for _ in range(sizes.repeats):
        started = time.perf_counter()
        tokens = run(sizes.new_tokens)
        _sync(device)
        rates.append(tokens / (time.perf_counter() - started))
    return {
        "tokens_per_s": round(statistics.median(rates), 1),
        "runs_tokens_per_s": [round(r, 1) for r in rates],
        "warmup_s": round(warmup, 2),
    }


def _train_rate(model, sizes: Sizes, device: str, vocab: int) -> dict:
    """PEFT LoRA training steps on random tokens: bf16 autocast, AdamW on the adapter; tokens/s of the timed ones."""
    import torch
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(
        model,
        LoraConfig(
            r=sizes.rank,
            lora_alpha=2 * sizes.rank,
            lora_dropout=0.05,
            target_modules=LORA_TARGETS,
            task_type="CAUSAL_LM",
        ),
    )
    peft.train()
    optimizer = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(3, vocab, (sizes.train_batch, sizes.train_seq), device=device)
    warm = 2
    losses = []
    started = time.perf_counter()
    for step in range(warm + sizes.train_steps):
        if step == warm:
            _sync(device)
            started = time.perf_counter()
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
            loss = peft(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    _sync(device)
    wall = time.perf_counter() - started
    tokens = sizes.train_batch * sizes.train_seq * sizes.train_steps
    return {
        "tokens_per_s": round(tokens / wall, 1),
        "steps": sizes.train_steps,
        "batch": sizes.train_batch,
        "seq": sizes.train_seq,
        "rank": sizes.rank,
        "loss_first_last": [round(losses[0], 3), round(losses[-1], 3)],
    }


def run_gpu_bench(
    device: str = "cuda",
    small: bool = False,
    out: Optional[Path] = None,
    progress: bool = True,
    sizes: Optional[Sizes] = None,
    models_dir: Optional[Path] = None,
) -> dict:
    """The report (see the module docstring); raises :class:`BenchRefused` when it cannot run as asked."""
    import peft as peft_pkg
    import torch
    import transformers
    from peft import PeftModel
    from transformers import Gemma3ForCausalLM

    from scenestream.agents.decoder.fast_decode import StaticCaches, compile_config
    from scenestream.agents.decoder.multilora import BASE, StackedLoRA

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchRefused(
            "no CUDA device here: `scenestream bench gpu` measures the GPU paths "
            "(run it on a GPU machine, or `--device cpu --small` for the tiny CPU version)"
        )
    if not device.startswith("cuda") and not small:
        raise BenchRefused(f"on {device} only with --small (the full sizes are for a GPU)")
    sizes = sizes or (SMALL if small else Sizes())

    def say(msg: str) -> None:
        if progress:
            print(f"bench gpu: {msg}", file=sys.stderr, flush=True)

    config, source = model_config(small, models_dir if models_dir is not None else _default_models_dir())
    backend = "inductor" if device.startswith("cuda") else "eager"
    compiling = compile_config(device, backend=backend)
    report: dict = {
        "benchmark": "gpu",
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft_pkg.__version__,
        },
        "model": {
            "config": source,
            "weights": "random",
            "dtype": "bfloat16",
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "vocab": config.vocab_size,
        },
        "sizes": asdict(sizes),
        "adapters": list(REGISTERS),
        "compile": {
            "backend": backend,
            "mode": compiling.mode,
            "fullgraph": compiling.fullgraph,
            "note": None
            if backend == "inductor"
            else "CPU: dynamo tracing only (eager backend); inductor and CUDA graphs need CUDA",
        },
        "errors": [],
    }

    def save() -> None:
        if out is not None:
            Path(out).write_text(json.dumps(report, indent=2))

    def section(key: str, what: str, measure: Callable[[], dict]) -> None:
        say(f"{what} …")
        try:
            report[key] = measure()
        except Exception as exc:  # one failed path must not hide the others' figures
            report[key] = {"error": f"{type(exc).__name__}: {exc}"}
            report["errors"].append(
                {"section": key, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
            )
            say(f"{what} FAILED: {type(exc).__name__}: {exc}")
        save()

    dynamo = torch._dynamo.config
    limit_name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
    setattr(dynamo, limit_name, max(getattr(dynamo, limit_name), RECOMPILE_LIMIT))
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    say(f"random {'small ' if small else ''}Gemma 3 model on {device} ({source}) …")
    with torch.device(device):
        reference = Gemma3ForCausalLM(config).to(torch.bfloat16).eval()
    ids = torch.randint(3, config.vocab_size, (sizes.batch, sizes.prompt_tokens), device=device)
    mixed = [(REGISTERS + (BASE,))[i % (len(REGISTERS) + 1)] for i in range(sizes.batch)]
    peft_names = ["__base__" if n == BASE else n for n in mixed]
    common = {"do_sample": False, "pad_token_id": 0, "eos_token_id": None}

    def generate_ids(model, rows, new_tokens: int, **kwargs):
        return model.generate(
            input_ids=rows, attention_mask=torch.ones_like(rows), max_new_tokens=new_tokens, **common, **kwargs
        )

    def generate(model, rows, new_tokens: int, **kwargs) -> int:
        return (generate_ids(model, rows, new_tokens, **kwargs).shape[1] - rows.shape[1]) * rows.shape[0]

    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        folders = random_adapters(reference, Path(tmp), sizes.rank)
        peft = PeftModel.from_pretrained(copy.deepcopy(reference), folders[REGISTERS[0]], adapter_name=REGISTERS[0])
        for name in REGISTERS[1:]:
            peft.load_adapter(folders[name], adapter_name=name)
        peft.eval()
        stacked = copy.deepcopy(reference)
        lora = StackedLoRA.attach(stacked, folders, form="onehot")
    stacked_caches = StaticCaches(stacked, compiling)
    base_caches = StaticCaches(reference, compiling)

    def check() -> dict:
        with torch.inference_mode():
            lora.set_slots(mixed)
            kept = {"attention_mask": torch.ones_like(ids), "logits_to_keep": 1}
            p = peft(input_ids=ids, adapter_names=peft_names, **kept).logits.float()
            s = stacked(input_ids=ids, **kept).logits.float()
            b = reference(input_ids=ids, **kept).logits.float()
        base_rows = [i for i, n in enumerate(mixed) if n == BASE]
        effect = (p - b).norm().item()
        error = (s - p).norm().item()
        return {
            "stacked_vs_peft_error_over_lora_effect": round(error / effect, 5),
            "lora_effect_over_logits": round(effect / p.norm().item(), 4),
            "base_rows_equal_base_model": bool(torch.equal(s[base_rows], b[base_rows])),
            "ok": error / effect < 0.05,
        }

    def slots_update() -> dict:
        """The compiled step (its CUDA graph on a GPU) must read the slots set after it was captured: the same
        batch with its rows and their adapters reversed gives each row its own answer back."""
        with torch.inference_mode():
            lora.set_slots(mixed)
            kwargs = stacked_caches.generate_kwargs(sizes.batch, ids.shape[1], sizes.new_tokens)
            forward = generate_ids(stacked, ids, sizes.new_tokens, **kwargs)
            lora.set_slots(mixed[::-1])
            kwargs = stacked_caches.generate_kwargs(sizes.batch, ids.shape[1], sizes.new_tokens)
            backward = generate_ids(stacked, ids.flip(0), sizes.new_tokens, **kwargs).flip(0)
        same = (forward == backward).all(dim=1).float().mean().item()
        return {"rows_identical_after_reversing": round(same, 4), "ok": same >= 0.95}

    def stacked_run(names: list, rows, compiled: bool) -> Callable[[int], int]:
        def run(new_tokens: int) -> int:
            with torch.inference_mode():
                lora.set_slots(names)
                kwargs = stacked_caches.generate_kwargs(len(names), rows.shape[1], sizes.new_tokens) if compiled else {}
                return generate(stacked, rows, new_tokens, **kwargs)

        return run

    def single(make: Callable[[int], Callable[[int], int]]) -> Callable[[int], int]:
        """``single_requests`` requests one at a time, adapters in turn."""

        def run(new_tokens: int) -> int:
            return sum(make(i)(new_tokens) for i in range(sizes.single_requests))

        return run

    def peft_single(i: int) -> Callable[[int], int]:
        def run(new_tokens: int) -> int:
            with torch.inference_mode():
                return generate(peft, ids[i : i + 1], new_tokens, adapter_names=[REGISTERS[i % len(REGISTERS)]])

        return run

    def base_run(compiled: bool) -> Callable[[int], int]:
        def run(new_tokens: int) -> int:
            with torch.inference_mode():
                kwargs = base_caches.generate_kwargs(sizes.batch, ids.shape[1], sizes.new_tokens) if compiled else {}
                return generate(reference, ids, new_tokens, **kwargs)

        return run

    def peft_mixed(new_tokens: int) -> int:
        with torch.inference_mode():
            return generate(peft, ids, new_tokens, adapter_names=peft_names)

    b = sizes.batch
    section("check", "stacked LoRA logits against PEFT's on the mixed batch", check)
    section(
        "b_prime_stacked_mixed_compiled",
        f"(b') stacked LoRA, mixed batch of {b}, compiled",
        lambda: _timed(stacked_run(mixed, ids, True), sizes, device),
    )
    section("slots_update_check", "compiled step with the slots changed in place", slots_update)
    section("base_compiled", f"(base) no LoRA, batch of {b}, compiled", lambda: _timed(base_run(True), sizes, device))
    section(
        "a_prime_stacked_single_compiled",
        "(a') stacked LoRA, one request at a time, compiled",
        lambda: _timed(
            single(lambda i: stacked_run([REGISTERS[i % len(REGISTERS)]], ids[i : i + 1], True)), sizes, device
        ),
    )
    section("base_eager", f"(base) no LoRA, batch of {b}, eager", lambda: _timed(base_run(False), sizes, device))
    section(
        "b_stacked_mixed_eager",
        f"stacked LoRA, mixed batch of {b}, eager",
        lambda: _timed(stacked_run(mixed, ids, False), sizes, device),
    )
    section("b_peft_mixed", f"(b) PEFT adapter_names, mixed batch of {b}", lambda: _timed(peft_mixed, sizes, device))
    section("a_peft_single", "(a) PEFT, one request at a time", lambda: _timed(single(peft_single), sizes, device))
    section(
        "train_lora",
        "LoRA training steps (PEFT, bf16 autocast)",
        lambda: _train_rate(copy.deepcopy(reference), sizes, device, config.vocab_size),
    )
    report["ratios"], report["targets"] = _ratios(report)
    report["compile"]["dynamo_graphs"] = dict(torch._dynamo.utils.counters["stats"])
    save()
    return report


def _ratios(report: dict) -> tuple[dict, dict]:
    def rate(key: str) -> Optional[float]:
        return report.get(key, {}).get("tokens_per_s")

    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return round(a / b, 2) if a and b else None

    single, mixed = rate("a_prime_stacked_single_compiled"), rate("b_prime_stacked_mixed_compiled")
    ratios = {
        "single_compiled_over_peft_single": ratio(single, rate("a_peft_single")),
        "mixed_compiled_over_peft_mixed": ratio(mixed, rate("b_peft_mixed")),
        "mixed_compiled_over_stacked_eager": ratio(mixed, rate("b_stacked_mixed_eager")),
        "base_compiled_over_mixed_compiled": ratio(rate("base_compiled"), mixed),
        "base_eager_over_mixed_compiled": ratio(rate("base_eager"), mixed),
    }
    slowdown = ratios["base_compiled_over_mixed_compiled"]
    targets = {
        **TARGETS,
        "single_stream_met": None if single is None else single >= TARGETS["single_stream_tokens_per_s_min"],
        "mixed_batch_met_vs_base_compiled": None
        if slowdown is None
        else slowdown <= TARGETS["mixed_batch_slowdown_vs_base_max"],
        "mixed_batch_met_vs_base_eager": None
        if ratios["base_eager_over_mixed_compiled"] is None
        else ratios["base_eager_over_mixed_compiled"] <= TARGETS["mixed_batch_slowdown_vs_base_max"],
    }
    return ratios, targets


def format_report(report: dict) -> str:
    rows = [
        ("(a)  PEFT, one at a time", "a_peft_single"),
        ("(a') stacked, one at a time, compiled", "a_prime_stacked_single_compiled"),
        ("(b)  PEFT, mixed batch", "b_peft_mixed"),
        ("     stacked, mixed batch, eager", "b_stacked_mixed_eager"),
        ("(b') stacked, mixed batch, compiled", "b_prime_stacked_mixed_compiled"),
        ("base, batch, eager", "base_eager"),
        ("base, batch, compiled", "base_compiled"),
        ("LoRA training", "train_lora"),
    ]
    lines = [
        f"bench gpu on {report['device']} (batch {report['sizes']['batch']}, "
        f"{report['sizes']['new_tokens']} new tokens, {report['model']['config']})"
    ]
    for label, key in rows:
        entry = report.get(key, {})
        shown = entry.get("error") or f"{entry.get('tokens_per_s')} tok/s" + (
            f"  (warm-up {entry['warmup_s']} s)" if "warmup_s" in entry else ""
        )
        lines.append(f"  {label:40} {shown}")
    lines.append(f"  check: {report.get('check')}; slots: {report.get('slots_update_check')}")
    lines.append(f"  ratios: {report.get('ratios')}")
    lines.append(f"  targets: {report.get('targets')}")
    return "\n".join(lines)


def save_random_model(folder: Path, tokenizer_dir: Path, models_dir: Optional[Path] = None) -> dict:
    """A Gemma 3 270M model folder with random bf16 weights and the real tokenizer: what `scenestream train` and
    the engine load (``SCENESTREAM_BASE_MODEL``) on a machine without the provisioned model."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM

    config, source = model_config(False, models_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer in {tokenizer_dir} has {len(tokenizer)} tokens, the model {config.vocab_size}")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Gemma3ForCausalLM(config).to(torch.bfloat16)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    made = {
        "source": "random weights (scenestream.ops.bench_gpu)",
        "config": source,
        "dtype": "bfloat16",
        "tokenizer": str(tokenizer_dir),
    }
    (folder / "scenestream-model.json").write_text(json.dumps(made))
    return {"folder": str(folder), **made}


def run_engine_check(new_tokens: int = 48, batch: int = 16, repeats: int = 3, progress: bool = True) -> dict:
    """The transformers engine itself (tokenizer, batch padding, streaming criterion, static cache and compiled
    decode as ``SCENESTREAM_COMPILE`` says) against the same engine with ``SCENESTREAM_COMPILE=off``, on the base
    model the settings name: tokens/s one request at a time and for a mixed batch, medians of ``repeats``."""
    import torch

    from scenestream.agents.decoder.engines import BASE, Request, TransformersEngine
    from scenestream.agents.decoder.fast_decode import compile_decision
    from scenestream.settings import get_settings

    settings = get_settings().model_copy(update={"max_new_tokens": new_tokens, "temperature": 0.0})
    report: dict = {
        "benchmark": "engine",
        "new_tokens": new_tokens,
        "batch": batch,
        "base_model": settings.base_model or "provisioned",
        "lora_kernel": settings.lora_kernel,
    }
    answers = {}
    for label, mode in (("fast", settings.compile), ("eager", "off")):
        if progress:
            print(f"engine check: SCENESTREAM_COMPILE={mode} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        engine = TransformersEngine(settings.model_copy(update={"compile": mode}))
        init = time.perf_counter() - started
        names = [*engine.adapters, BASE]
        mixed = [
            Request(prompt=f"Text: a thought, number {i}.\nAnswer:", adapter=names[i % len(names)])
            for i in range(batch)
        ]
        engine.generate(mixed)  # warm-up, not counted (the eager engine's first CUDA kernels)

        def rate(engine, batches: list) -> tuple[float, list]:
            rates, firsts = [], []
            for _ in range(repeats):
                started = time.perf_counter()
                made = [g for requests in batches for g in engine.generate(requests)]
                rates.append(sum(g.completion_tokens for g in made) / (time.perf_counter() - started))
                firsts += [g.first_token_ms for g in made if g.first_token_ms is not None]
            return round(statistics.median(rates), 1), firsts

        single, firsts = rate(engine, [[r] for r in mixed[:4]])
        batched, _ = rate(engine, [mixed])
        answers[label] = [g.text for g in engine.generate(mixed)]
        expected, why = compile_decision(mode, engine.device, engine.lora_kernel)
        report[label] = {
            "compile_setting": mode,
            "compile_expected": expected,
            "why": why,
            "compiled": engine.compiled,
            "init_s": round(init, 2),
            "single_tokens_per_s": single,
            f"batch_{batch}_tokens_per_s": batched,
            "single_first_token_ms_p50": round(statistics.median(firsts), 1) if firsts else None,
        }
        del engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    same = sum(a == b for a, b in zip(answers["fast"], answers["eager"]))
    report["answers_identical_fast_vs_eager"] = f"{same}/{batch}"
    report["note"] = (
        "a speed check: compiled and eager kernels round bf16 differently, and greedy answers part "
        "at near ties (random weights make nearly every step one; `scenestream bench lora` shows "
        "the same between two batch layouts of PEFT itself), so differing answers prove nothing here"
    )
    return report


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m scenestream.ops.bench_gpu``: the CLI's ``bench gpu`` without typer, and the helpers
    ops/gpu_check.sh needs (``--save-random-model``, ``--engine-check``)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes (the only way on a CPU)")
    parser.add_argument("--out", type=Path, help="also write the report here, after every section")
    parser.add_argument(
        "--save-random-model",
        type=Path,
        metavar="FOLDER",
        help="only save a random-weights Gemma 3 270M folder (needs --tokenizer)",
    )
    parser.add_argument("--tokenizer", type=Path, help="a folder with the Gemma tokenizer (tokenizer.json)")
    parser.add_argument(
        "--engine-check", action="store_true", help="only time the transformers engine, compiled decode against eager"
    )
    args = parser.parse_args(argv)
    if args.save_random_model:
        if not args.tokenizer:
            parser.error("--save-random-model needs --tokenizer")
        print(json.dumps(save_random_model(args.save_random_model, args.tokenizer)))
        return 0
    if args.engine_check:
        report = run_engine_check(progress=not args.json)
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        return 0 if report["fast"]["compiled"] == report["fast"]["compile_expected"] else 1
    try:
        report = run_gpu_bench(args.device, args.small, args.out, progress=not args.json)
    except BenchRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
