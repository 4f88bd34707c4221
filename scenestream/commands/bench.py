"""Benchmarks: ``scenestream bench transport|scene|decoder|quality|memory|e2e|lora|gpu|chaos|registers [--json]``.

The measurements live in ``ops/bench_*.py``; with ``--json`` a command prints the report as one JSON
document (progress on stderr), without it a short rendering of the main figures: the ops module's
``format_report`` for transport, scene and gpu, the ``render_*`` functions here for the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from scenestream.commands.common import (
    LORA_KERNELS,
    REGISTER_HELP,
    SCENE_EMBEDDERS,
    EngineName,
    embedders_choice,
    fail,
    json_option,
    kernels_choice,
    print_human,
    print_json,
    progress_to_stderr,
    register_choice,
)

bench_app = typer.Typer(help="Benchmarks (--json for machines).", no_args_is_help=True)
JSON_HELP = "Print the report as one JSON document (progress on stderr)."


def _table(*columns: str, title: str) -> Any:
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left")
    for column in table.columns[1:]:
        column.justify = "right"
    return table


def _num(value: Any, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _group(*parts: Any) -> Any:
    from rich.console import Group

    return Group(*[part for part in parts if part is not None])


# ----------------------------------------------------------------------------------------------- renderings

DECODER_RUNS = (
    ("(a) transformers + PEFT, one at a time", "a_transformers_single", "ratio_b_over_a"),
    ("(b') transformers + PEFT, batched", "b_transformers_batched_peft", "ratio_b_peft_over_a"),
    ("(b) transformers, batched", "b_transformers_batched", "ratio_b_over_a"),
    ("(c) vLLM multi-LoRA", "c_vllm", "ratio_vllm_over_a"),
    ("(c') vLLM without scenestream CPU ops", "c_vllm_without_cpu_ops", "ratio_vllm_without_cpu_ops_over_a"),
    ("(c'') vLLM without tcmalloc", "c_vllm_without_tcmalloc", "ratio_vllm_without_tcmalloc_over_a"),
)


def render_decoder(report: dict) -> Any:
    """Tokens/s and time to first token of each decoder run, and its speed against (a)."""
    table = _table(
        "run",
        "requests",
        "batch",
        "tok/s",
        "TTFT p50 ms",
        "× (a)",
        title=f"decoder: {report['scenes']} held-out scenes, {report['max_new_tokens']} new tokens at most",
    )
    notes = []
    for label, key, ratio in DECODER_RUNS:
        run = report.get(key)
        if run is None:
            continue
        if "skipped" in run:
            notes.append(f"{label}: skipped ({run['skipped']})")
            continue
        if key == "b_transformers_batched":
            label = f"(b) transformers ({run.get('lora_kernel')} LoRA), batched"
        times = "1.00" if key.startswith("a_") else _num(report.get(ratio), ".2f")
        table.add_row(
            label, str(run["requests"]), str(run["batch"]), _num(run["tokens_per_s"]), _num(run["ttft_p50_ms"]), times
        )
    target = report.get("targets", {}).get("vllm_over_single_min")
    if target is not None:
        notes.append(f"target: vLLM ≥ {target}× (a)")
    return _group(table, *notes)


QUALITY_FIGURES = (
    ("judge", "judge_fidelity", ".3f"),
    ("finished", "finished", ".3f"),
    ("language", "language_match", ".3f"),
    ("invented", "invented_sources", "d"),
    ("loops", "loop_rate", ".3f"),
    ("tokens", "tokens_mean", ".1f"),
    ("relevance", "relevance", ".3f"),
    ("router", "router_fidelity", ".3f"),
)


def render_quality(report: dict) -> Any:
    """Per register and language, each figure of the adapter's answers and, on the next line, the base model's
    on the same prompts; the held-out losses and the targets missed."""
    table = _table(
        "register",
        "lang",
        "model",
        *[name for name, _key, _fmt in QUALITY_FIGURES],
        "loss",
        title=f"quality on {report.get('eval_set', 'the eval set')}, each adapter and the base model "
        f"({report.get('engine', '?')} engine; judge held-out accuracy "
        f"{_num(report.get('judge', {}).get('held_out_accuracy'), '.3f')})",
    )
    for register, row in report["per_register"].items():
        loss = row.get("heldout_loss") or {}
        for lang in ("ru", "en", "all"):
            for side in ("adapter", "base"):
                cell = row[side].get(lang)
                if cell is None:
                    continue
                table.add_row(
                    register if side == "adapter" else "",
                    lang if side == "adapter" else "",
                    side,
                    *[_num(cell.get(key), fmt) for _name, key, fmt in QUALITY_FIGURES],
                    _num(loss.get(side), ".2f") if lang == "all" and loss else "",
                )
    notes = [
        "judge: the style judge (ops/judge.py), independent of the router; router: the scene builder's router, "
        "which chose training examples; relevance: e5 cosine of answer and prompt; loss: held-out loss on the "
        "test split of data/decoder"
    ]
    targets = report.get("targets", {})
    if targets.get("missed"):
        notes.append(f"targets missed ({len(targets['missed'])}):")
        notes += [f"  {line}" for line in targets["missed"]]
    elif "all_met" in targets:
        notes.append("targets: all met")
    return _group(table, *notes)


def render_memory(report: dict) -> Any:
    """Archive store and recall speed per size, paraphrase recall@5, the memory stage's rate."""
    table = _table(
        "scenes",
        "store scenes/s",
        "recalls/s",
        "recall p50 ms",
        "recall p99 ms",
        title=f"memory: archive {report.get('backend', '')}",
    )
    for run in report["archive"]:
        table.add_row(
            f"{run['scenes']:,}",
            _num(run["store_scenes_per_s"], ".0f"),
            _num(run["recall_per_s"], ".0f"),
            _num(run["recall_p50_ms"], ".3f"),
            _num(run["recall_p99_ms"], ".3f"),
        )
    para = report["paraphrases"]
    by_lang = ", ".join(f"{lang} {value:.3f}" for lang, value in para["by_lang"].items())
    targets = report.get("targets", {})
    return _group(
        table,
        f"paraphrase recall@5: {para['recall_at_5']:.3f} ({by_lang}; {para['pairs']} pairs among "
        f"{para['distractors']} distractors)",
        f"memory stage (e5 included): {report['stage_scenes_per_s']:.1f} scenes/s",
        "targets: " + ", ".join(f"{k} {v}" for k, v in targets.items()) if targets else None,
    )


def render_e2e(report: dict) -> Any:
    """Latency to the first streamed piece and to the whole answer per mode and offered rate; ask against
    generation; memory under overload."""
    table = _table(
        "mode",
        "req/s",
        "requests",
        "streamed",
        "first piece p50 ms",
        "p99 ms",
        "answer p50 ms",
        "p99 ms",
        "tok/s",
        "RSS MiB",
        title=f"e2e: engine {report['engine']}, {report['max_new_tokens']} new tokens at most, "
        f"pieces every {report['stream_interval_ms']} ms, at most {report.get('decoder_max_inflight')} in flight",
    )
    modes = report.get("modes") or {"batch": {"runs": report.get("runs", [])}}
    for mode, measured in modes.items():
        for run in measured["runs"]:
            table.add_row(
                mode,
                _num(run["rate_rps"], "g"),
                str(run["requests"]),
                str(run["streamed_answers"]),
                _num(run["first_token_p50_ms"], ".0f"),
                _num(run["first_token_p99_ms"], ".0f"),
                _num(run["answer_p50_ms"], ".0f"),
                _num(run["answer_p99_ms"], ".0f"),
                _num(run.get("tokens_per_s"), ".1f"),
                _num(run.get("rss_mb"), ".0f"),
            )
    lines = [
        f"{r['rate_rps']:g} req/s: batch/continuous first piece p50 "
        f"{_num(r['first_token_p50_batch_over_continuous'], '.2f')}×, "
        f"answer p50 {_num(r['answer_p50_batch_over_continuous'], '.2f')}×"
        for r in report.get("ratios", [])
    ]
    first = next(iter(modes.values()), {})
    over = first.get("overload")
    if over:
        lines.append(
            f"overload {over['rate_rps']:g} req/s for {over['seconds']:.0f} s: RSS {over['rss_mb_first']:.0f} → "
            f"max {over['rss_mb_max']:.0f} → {over['rss_mb_last']:.0f} MiB"
        )
    asks = first.get("ask_through_running_stack", report.get("ask_through_running_stack"))
    for way, summary in (asks or {}).items():
        lines.append(
            f"ask through the running stack, {way.replace('_', ' ')}: {summary['calls']} calls, "
            f"ask p50 {summary['ask_p50_ms']:.0f} ms, generation p50 {summary['generate_p50_ms']:.0f} ms "
            f"({summary['ask_over_generate']:.2f}×)"
        )
    return _group(table, *lines)


def render_lora(report: dict) -> Any:
    """Tokens/s of each LoRA kernel on one mixed-adapter batch, speed-ups and identical answers."""
    kernels = list(report["kernels"])
    reference = kernels[0]
    table = _table(
        "kernel",
        "tok/s (median)",
        "warm-up s",
        f"× {reference}",
        "answers = ref (bf16)",
        "answers = ref (float32)",
        "compiled",
        title=f"lora: {report['prompts']} prompts × {report['new_tokens']} new tokens, {report['repeats']} "
        f"repeats on {report['device']} ({report['threads']} threads)",
    )
    for kernel, row in report["kernels"].items():
        speedup = "1.00" if kernel == reference else _num(report.get(f"speedup_{kernel}_over_{reference}"), ".2f")
        table.add_row(
            kernel,
            _num(row["tokens_per_s_median"]),
            _num(row["warmup_s"], ".2f"),
            speedup,
            row.get(f"answers_identical_to_{reference}", "-"),
            row.get(f"float32_answers_identical_to_{reference}", "-"),
            "yes" if report.get("compiled_decode", {}).get(kernel) else "no",
        )
    example = report.get("example")
    return _group(
        table,
        report.get("answers_analysis"),
        f"example ({example['adapter']}): {example['answer']}" if example else None,
    )


# --------------------------------------------------------------------------------------------------- commands


def _show(report: dict, as_json: bool, render: Any) -> None:
    if as_json:
        print_json(report)
    else:
        shown = render(report)
        if isinstance(shown, str):  # the ops modules' format_report: plain lines
            typer.echo(shown)
        else:
            print_human(shown)


@bench_app.command("transport")
def bench_transport(
    as_json: bool = json_option(JSON_HELP),
    messages: int = typer.Option(20_000, help="Messages pushed through the three hops for throughput."),
    rate: float = typer.Option(1_000.0, help="Offered rate (msg/s) for the latency run."),
    seconds: float = typer.Option(5.0, help="Length of the latency run."),
    rounds: int = typer.Option(3, help="Alternating rounds of both chains; medians are reported."),
) -> None:
    """Three trivial hops: the project's backbone against raw aiokafka, same broker, same run."""
    from scenestream.ops.bench_transport import format_report, run_bench

    with progress_to_stderr():
        report = run_bench(messages=messages, rate=rate, seconds=seconds, rounds=rounds, progress=not as_json)
    _show(report, as_json, format_report)


@bench_app.command("scene")
def bench_scene(
    as_json: bool = json_option(JSON_HELP),
    embedders: str = typer.Option(
        ",".join(SCENE_EMBEDDERS),
        callback=embedders_choice,
        help=f"Comma-separated embedders to measure side by side ({', '.join(SCENE_EMBEDDERS)}).",
    ),
    repeats: int = typer.Option(3, help="Timed passes over the held-out texts (median reported)."),
) -> None:
    """Register accuracy, macro-F1, confusion, Δ-code agreement and texts/s on the held-out split."""
    from scenestream.ops.bench_scene import format_report, run_bench

    with progress_to_stderr():
        report = run_bench(embedders, repeats, progress=not as_json)
    _show(report, as_json, format_report)


@bench_app.command("decoder")
def bench_decoder(
    as_json: bool = json_option(JSON_HELP),
    scenes: int = typer.Option(64, help="Held-out scenes, spread over the four registers."),
    batch: int = typer.Option(16, help="Batch size of the batched transformers run."),
    single_limit: Optional[int] = typer.Option(None, help="Time (a) on the first N scenes only."),
) -> None:
    """(a) transformers+PEFT one at a time, (b) batched, (c) vLLM multi-LoRA: tokens/s, TTFT, ratios."""
    from scenestream.ops.bench_decoder import run_decoder_bench

    with progress_to_stderr():
        report = run_decoder_bench(scenes, batch, progress=not as_json, single_limit=single_limit)
    _show(report, as_json, render_decoder)


@bench_app.command("lora")
def bench_lora(
    as_json: bool = json_option(JSON_HELP),
    prompts: int = typer.Option(
        16, help="Held-out prompts in the mixed batch (registers round-robin, every fifth row the base model)."
    ),
    new_tokens: int = typer.Option(40, help="New tokens per answer (greedy)."),
    repeats: int = typer.Option(3, help="Timed batches per kernel, taking turns (median reported)."),
    kernels: str = typer.Option(
        "peft,stacked",
        callback=kernels_choice,
        help=f"SCENESTREAM_LORA_KERNEL values to compare ({', '.join(LORA_KERNELS)}), "
        "comma-separated; the first is the reference for identical answers.",
    ),
) -> None:
    """One mixed-adapter batch on the real base model: PEFT adapter_names vs the stacked LoRA, tok/s and answers."""
    from scenestream.ops.bench_lora import run_lora_bench

    with progress_to_stderr():
        report = run_lora_bench(prompts, new_tokens, repeats, tuple(kernels), progress=not as_json)
    _show(report, as_json, render_lora)


@bench_app.command("gpu")
def bench_gpu(
    as_json: bool = json_option(JSON_HELP),
    device: str = typer.Option("cuda", help="cuda (default; refuses without it) or cpu (with --small only)."),
    small: bool = typer.Option(False, "--small", help="Tiny sizes: a smoke run, the only way on a CPU."),
    out: Optional[Path] = typer.Option(None, help="Also write the report here, rewritten after every section."),
) -> None:
    """PEFT vs stacked LoRA vs base on Gemma 3 270M's architecture (random bf16 weights): one at a time and
    mixed batches of 256, static cache + compiled decode, LoRA training tok/s; ratios against the targets."""
    from scenestream.ops.bench_gpu import BenchRefused, format_report, run_gpu_bench

    try:
        with progress_to_stderr():
            report = run_gpu_bench(device, small, out, progress=not as_json)
    except BenchRefused as exc:
        fail(str(exc))
    _show(report, as_json, format_report)
    if report["errors"]:
        fail(f"{len(report['errors'])} section(s) failed: " + ", ".join(e["section"] for e in report["errors"]))


@bench_app.command("quality")
def bench_quality(
    as_json: bool = json_option(JSON_HELP),
    prompts: Optional[int] = typer.Option(
        None, "--prompts", min=1, help="Only the first N eval prompts of each language (all 120 + 120 by default)."
    ),
    register: Optional[list[str]] = typer.Option(
        None,
        "--register",
        "-r",
        callback=register_choice,
        help=f"Only this register, repeat for several (all by default): {REGISTER_HELP}.",
    ),
    batch: int = typer.Option(64, min=1, help="Requests per engine.generate call."),
    answers: bool = typer.Option(False, "--answers", help="Put every answer, with its readings, in the report."),
    heldout_loss: bool = typer.Option(
        True, "--heldout-loss/--no-heldout-loss", help="Also the held-out loss of each adapter and the base model."
    ),
) -> None:
    """Answers to the eval set (data/eval/prompts.jsonl), per register and language, each adapter against the
    base model on the same prompts: judge fidelity (ops/judge.py, independent of the router), finished, language,
    invented sources, loops, tokens, e5 relevance, and the router's fidelity; SCENESTREAM_ADAPTERS_DIR measures
    adapters other than the shipped ones, SCENESTREAM_ENGINE another engine."""
    from scenestream.ops.bench_decoder import run_quality
    from scenestream.schemas.registers import catalogue

    try:
        with progress_to_stderr():
            report = run_quality(
                prompts,
                progress=True,
                registers=tuple(register or catalogue().names),
                batch=batch,
                include_answers=answers,
                heldout=heldout_loss,
            )
    except ValueError as exc:
        fail(str(exc), 2)
    _show(report, as_json, render_quality)


@bench_app.command("memory")
def bench_memory(
    as_json: bool = json_option(JSON_HELP),
    sizes: str = typer.Option("10000,100000", help="Archive sizes to measure."),
) -> None:
    """Archive store/recall throughput and latency at 10k and 100k scenes; recall@5 of paraphrases."""
    from scenestream.ops.bench_memory import run_bench

    with progress_to_stderr():
        report = run_bench([int(x) for x in sizes.split(",") if x.strip()], progress=not as_json)
    _show(report, as_json, render_memory)


@bench_app.command("e2e")
def bench_e2e(
    as_json: bool = json_option(JSON_HELP),
    seconds: float = typer.Option(20.0, help="Length of each offered-rate run."),
    rates: str = typer.Option("0.5,1,2,4", help="Comma-separated offered rates (requests/s)."),
    asks: int = typer.Option(3, help="One-at-a-time asks through the running stack, in-process and as the CLI."),
    modes: str = typer.Option(
        "continuous,batch",
        help="Decoder modes measured side by side, each with a worker of its own (SCENESTREAM_DECODER_MODE).",
    ),
    overload_seconds: float = typer.Option(
        0.0, help="Then offer --overload-rate this long to the first mode, sampling memory every 5 s (0: skip)."
    ),
    overload_rate: float = typer.Option(4.0, help="Offered rate of the overload run (requests/s)."),
) -> None:
    """p50/p99 from publishing to the first streamed piece and to the full answer per offered rate, for each
    decoder mode side by side, with the ratios; then `ask` through the running stack against the generation
    time alone; optionally memory under a sustained overload."""
    from scenestream.ops.bench_decoder import run_e2e_bench

    offered = tuple(float(x) for x in rates.split(",") if x.strip())
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    unknown = set(chosen) - {"continuous", "batch"}
    if unknown or not chosen:
        raise typer.BadParameter(f"modes are continuous and batch, got {modes!r}", param_hint="--modes")
    with progress_to_stderr():
        report = run_e2e_bench(
            offered,
            seconds,
            asks,
            progress=not as_json,
            modes=chosen,
            overload_seconds=overload_seconds,
            overload_rate=overload_rate,
        )
    _show(report, as_json, render_e2e)


@bench_app.command("serve")
def bench_serve(
    as_json: bool = json_option(JSON_HELP),
    seconds: float = typer.Option(20.0, help="Seconds of load per rate."),
    rates: str = typer.Option("1,2", help="Comma-separated offered rates (requests/s)."),
    idle: int = typer.Option(200, help="Idle WebSocket connections held open during a rerun of the first rate."),
    burst: int = typer.Option(50, help="Streaming requests sent at once (0: skip)."),
    max_tokens: int = typer.Option(32, help="Tokens per answer."),
    pairs: int = typer.Option(6, help="API/Kafka pairs asked one at a time, for the API's own cost (0: skip)."),
) -> None:
    """Streaming OpenAI clients against `scenestream serve` beside the same load straight to Kafka: first chunk,
    first token and answer p50/p99, the API's added latency, idle connections, a burst."""
    import argparse

    from scenestream.ops.bench_serve import render, run

    try:
        offered = [float(x) for x in rates.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"rates are numbers, got {rates!r}", param_hint="--rates") from None
    args = argparse.Namespace(
        seconds=seconds, rates=offered, idle=idle, burst=burst, max_tokens=max_tokens, pairs=pairs, json=as_json
    )
    with progress_to_stderr():
        report = run(args)
    if as_json:
        print_json(report)
    else:
        typer.echo(render(report))


@bench_app.command("inflight")
def bench_inflight(
    as_json: bool = json_option(JSON_HELP),
    caps: str = typer.Option("4,8,16,32,64", help="Comma-separated most-answers-in-flight to measure."),
    scenes: int = typer.Option(64, help="Held-out scenes, spread over the four registers."),
) -> None:
    """The continuous decoder at several most-answers-in-flight against the whole set as one batch, on one
    engine: tokens/s, first token and answer p50/p99; what SCENESTREAM_DECODER_MAX_INFLIGHT should be."""
    from scenestream.ops.bench_continuous import run_inflight_bench

    try:
        chosen = tuple(int(x) for x in caps.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"caps are whole numbers, got {caps!r}", param_hint="--caps") from None
    if not chosen or min(chosen) < 1:
        raise typer.BadParameter(f"caps are at least 1, got {caps!r}", param_hint="--caps")
    with progress_to_stderr():
        report = run_inflight_bench(chosen, scenes, progress=not as_json)
    _show(report, as_json, render_inflight)


def render_inflight(report: dict) -> Any:
    """Tokens/s and latencies per most-in-flight, against the one batch."""
    table = _table(
        "run",
        "tok/s",
        "share of batch",
        "first token p50 ms",
        "p99 ms",
        "answer p50 ms",
        "p99 ms",
        title=f"inflight: engine {report['engine']}, {report['scenes']} scenes, {report['max_new_tokens']} new tokens",
    )
    batch = report["batch"]
    table.add_row("one batch of all", _num(batch["tokens_per_s"]), "1", _num(batch["ttft_p50_ms"], ".0f"), "", "", "")
    for run in report["continuous"]:
        table.add_row(
            f"continuous, {run['in_flight']} in flight",
            _num(run["tokens_per_s"]),
            _num(run["share_of_batch_tokens_per_s"], ".2f"),
            _num(run["ttft_p50_ms"], ".0f"),
            _num(run["ttft_p99_ms"], ".0f"),
            _num(run["answer_p50_ms"], ".0f"),
            _num(run["answer_p99_ms"], ".0f"),
        )
    return _group(table, f"suggested SCENESTREAM_DECODER_MAX_INFLIGHT: {report['suggested_in_flight']}")


def render_chaos(report: dict) -> Any:
    summary = _table("figure", "measured", "target", title="chaos: SIGKILLs under load")
    targets = report["targets"]
    summary.add_row("messages / kills", f"{report['messages']} / {report['kills']}", "")
    summary.add_row("lost", str(report["lost"]), str(targets["lost"]))
    for name, count in report["duplicated_ids"].items():
        summary.add_row(f"duplicated ids: {name}", f"{count} ({report['extra_copies'][name]} extra)", "0")
    summary.add_row("dead-lettered", ", ".join(f"{k} {v}" for k, v in report["dead_lettered"].items()), "")
    summary.add_row("archive count", _num(report["archive_count"], "d"), str(report["messages"]))
    summary.add_row(
        "survivors' pause p50 / max (s)",
        f"{_num(report['survivors_pause_p50_s'], '.2f')} / {_num(report['survivors_pause_max_s'], '.2f')}",
        f"≤ {targets['survivors_pause_s']}",
    )
    summary.add_row(
        "killed partitions served again p50 / max (s)",
        f"{_num(report['served_again_p50_s'], '.2f')} / {_num(report['served_again_max_s'], '.2f')}",
        f"≤ {targets['served_again_s']}",
    )
    return summary


@bench_app.command("chaos")
def bench_chaos(
    as_json: bool = json_option(JSON_HELP),
    messages: int = typer.Option(2000, min=1, help="Messages published at the steady rate."),
    rate: float = typer.Option(20.0, min=0.1, help="Messages per second."),
    workers: int = typer.Option(2, min=1, help="Workers of the killable stages (tokenizer and scene)."),
    kill_every: str = typer.Option("10-20", help="Seconds between two kills: MIN-MAX (a random time in it)."),
    kills: Optional[int] = typer.Option(None, min=0, help="Stop killing after this many (default: until the end)."),
    memory: bool = typer.Option(True, help="Run the memory stage too (one worker) and count its archive."),
    seed: int = typer.Option(0, help="Seed of the kill schedule and victims."),
    static: bool = typer.Option(
        False,
        help="Workers with stable names (static membership; a replacement takes the killed worker's name). "
        "On the embedded Tansu the replacement never gets the partitions back: for a Kafka cluster.",
    ),
) -> None:
    """SIGKILL a worker every few seconds under a steady load and restart it: lost, duplicated per topic,
    dead-lettered, the surviving workers' pause and the time until the killed worker's partitions are served."""
    from scenestream.ops.bench_chaos import run_chaos

    low, _, high = kill_every.partition("-")
    try:
        every = (float(low), float(high or low))
    except ValueError:
        fail(f"--kill-every takes MIN-MAX seconds, got {kill_every!r}", 2)
    with progress_to_stderr():
        report = run_chaos(messages, rate, workers, every, kills, memory, seed, static, progress=not as_json)
    _show(report, as_json, render_chaos)


@bench_app.command("registers")
def bench_registers(
    as_json: bool = json_option(JSON_HELP),
    loads: int = typer.Option(5, min=1, help="New adapter versions published, one after another."),
    rate: float = typer.Option(1.0, min=0.1, help="Requests per second during the load/unload cycle."),
    seconds: float = typer.Option(30.0, min=5, help="How long each traffic run (quiet, then cycling) lasts."),
    every: float = typer.Option(5.0, min=1, help="Seconds between two register changes while cycling."),
    engine: Optional[EngineName] = typer.Option(None, help="Decoder engine (default: vllm where installed)."),
) -> None:
    """A register's adapter published to a running stack (its own embedded broker and `scenestream run`
    worker): from publishing a new version to the first answer served by it, p50 over --loads; and ordinary
    requests at --rate, quiet against a register published and removed every --every seconds, side by side."""
    from scenestream.ops.bench_registers import format_report, run_registers_bench

    with progress_to_stderr():
        report = run_registers_bench(loads, rate, seconds, every, engine, progress=not as_json)
    _show(report, as_json, format_report)
