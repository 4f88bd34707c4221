"""The register catalogue from the command line.

scenestream register add NAME --examples FILE [--symbol S] [--description-ru T --description-en T] [--json]
scenestream register list [--json]       # every register, where it is declared, its adapter and version
scenestream register publish NAME [--json] # a running stack takes NAME as its file now declares it
scenestream register remove NAME [--json]  # a running stack forgets NAME: its adapter unloaded, never routed to
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scenestream.commands.common import connected_settings, fail, json_option, print_human, print_json
from scenestream.settings import get_settings

register_app = typer.Typer(
    help="The registers: declared one file each in registers/ and in the folders on SCENESTREAM_REGISTERS_PATH.",
    no_args_is_help=True,
)


def describe(settings, statuses: Optional[list] = None) -> list[dict]:
    """Each register of the catalogue as a JSON-able dict: its declaration, its adapter folder as the decoder
    looks it up (``SCENESTREAM_ADAPTERS_DIR`` first), that adapter's version, and with ``statuses`` (the
    decoders' :class:`DecoderStatus` records) the decoders that serve it and which version each serves."""
    from scenestream.schemas.registers import CatalogueError, catalogue

    rows = []
    for decl in catalogue():
        folder = decl.adapter_folder(settings.adapters_dir)
        try:
            version = decl.adapter_version(settings.adapters_dir)
        except CatalogueError as exc:  # a folder with a config and no weights
            version, problem = None, str(exc)
        else:
            problem = None if version else f"no adapter in {folder}: answered by the base model"
        rows.append(
            {
                "name": decl.name,
                "symbol": decl.symbol,
                "description": decl.description,
                "file": str(decl.source),
                "shipped": decl.shipped,
                "adapter": str(folder) if folder else None,
                "adapter_version": version,
                "problem": problem,
                "decoders": None
                if statuses is None
                else [
                    {"worker": s.worker, "engine": s.engine, "version": s.adapters[decl.name] or None, "ts_ms": s.ts_ms}
                    for s in statuses
                    if decl.name in s.adapters
                ],
                "decoder_examples": [str(p) for p in decl.decoder_examples],
                "router_examples": [str(p) for p in decl.router_examples],
            }
        )
    return rows


@register_app.command("list")
def register_list(as_json: bool = json_option()) -> None:
    """Every register of the catalogue, in order: its symbol, the file that declares it, its adapter folder and
    the adapter's version (name@content hash of its weights; none: answered by the base model); with a stack
    running (this machine's, or SCENESTREAM_BROKER), the decoder workers that serve it and the version each
    serves, from what they report on the decoder-status topic (a stopped worker's last report stays), and the
    registers as that stack has them (published and removed ones included)."""
    import asyncio

    from rich.table import Table

    from scenestream.broker import reachable
    from scenestream.registry import decoder_statuses, stack_catalogue
    from scenestream.schemas.registers import CatalogueError, use

    settings = get_settings()
    try:
        stack = reachable(settings)
        statuses = None
        if stack is not None:  # the registers as the running stack has them, and who serves each
            use(asyncio.run(stack_catalogue(stack)))
            statuses = asyncio.run(decoder_statuses(stack))
        rows = describe(settings, statuses)
    except CatalogueError as exc:
        fail(str(exc))
    if as_json:
        print_json(rows)
        return
    table = Table("register", "symbol", "adapter version", "served by", "declared in")
    for row in rows:
        served = (
            "no stack running"
            if row["decoders"] is None
            else "\n".join(f"{d['worker']} ({d['version'] or '?'})" for d in row["decoders"]) or "no decoder"
        )
        table.add_row(row["name"], row["symbol"], row["adapter_version"] or "none", served, row["file"])
    print_human(table)


def _announce(name: str, removed: bool, as_json: bool) -> None:
    import asyncio

    from scenestream.registry import change_of, publish
    from scenestream.schemas.registers import CatalogueError, catalogue

    try:
        known = catalogue()
    except CatalogueError as exc:
        fail(str(exc))
    if not removed and name not in known:
        fail(f"{known.unknown(name)}; put {name}.toml into a folder on SCENESTREAM_REGISTERS_PATH first", 2)
    settings = connected_settings()
    change = change_of(name, settings, removed=removed)
    asyncio.run(publish(settings, change))
    if as_json:
        print_json(change)
        return
    if removed:
        typer.echo(f"register {name} removed: decoders unload its adapter, scenes are no longer routed to it")
    else:
        typer.echo(f"register {name} published: {change.adapter_version or 'no adapter (the base model answers)'}")


@register_app.command("publish")
def register_publish(
    name: str = typer.Argument(..., help="The register, as its file in the catalogue declares it now."),
    as_json: bool = json_option("Print the change sent (one JSON document)."),
) -> None:
    """Announce register NAME to the running stack (its file, its adapter folder and the adapter's version):
    decoders load the adapter in place with no restart (a new version gets a new LoRA id; answers in flight
    finish on the version they began with). Run it after adding a register's file or training a new adapter."""
    _announce(name, removed=False, as_json=as_json)


@register_app.command("remove")
def register_remove(
    name: str = typer.Argument(..., help="The register to take out of the running stack."),
    as_json: bool = json_option("Print the change sent (one JSON document)."),
) -> None:
    """Take register NAME out of the running stack: decoders unload its adapter and free its slot, scene
    builders stop routing to it, and a message that asks for it by name is dead-lettered. Its file stays
    where it is (delete it too, or a stack started later without the change still has it)."""
    _announce(name, removed=True, as_json=as_json)


@register_app.command("add")
def register_add(
    name: str = typer.Argument(..., help="The new register's name: lowercase latin letters, digits and _."),
    examples: Path = typer.Option(
        ..., "--examples", exists=True, dir_okay=False, help="JSON lines {text, answer[, lang]} in the new voice."
    ),
    symbol: str = typer.Option("◇", help="The symbol a scene in this register compresses into."),
    description_ru: Optional[str] = typer.Option(None, help="What the register is, in Russian."),
    description_en: Optional[str] = typer.Option(None, help="What the register is, in English."),
    floor: float = typer.Option(
        0.97,
        help="Refuse when an existing register's held-out routing accuracy would "
        "fall below this (or below what it has, if lower).",
    ),
    epochs: float = typer.Option(2.0, help="Adapter training epochs over the train part of the examples."),
    train_adapter: bool = typer.Option(True, "--train/--no-train", help="Train its adapter (CPU or GPU)."),
    publish_it: bool = typer.Option(
        True, "--publish/--no-publish", help="Announce it to the running stack on this machine or cluster, if any."
    ),
    replace: bool = typer.Option(False, help="Replace a register of yours with the same name."),
    as_json: bool = json_option("Print one JSON document: files, the router's accuracies, training, the change."),
) -> None:
    """Add a register of your own from texts with answers in its voice (Russian and/or English, at least 10): its
    file and examples go to the first folder on SCENESTREAM_REGISTERS_PATH (else SCENESTREAM_DATA_DIR/registers);
    the scene router's head is refitted with it and each register's held-out accuracy reported before and after
    (refused, leaving nothing, when an existing register would fall below --floor); its LoRA adapter is trained;
    and a running stack takes it at once (`register publish`)."""
    from scenestream.broker import reachable
    from scenestream.commands.common import progress_to_stderr
    from scenestream.registry import change_of, publish
    from scenestream.schemas.registers import Catalogue, CatalogueError, catalogue, folders_from, use, user_folder
    from scenestream.training.new_register import read_examples, remove_files, write_register
    from scenestream.training.router import refit

    settings = get_settings()
    try:
        known = catalogue()
        if name in known and not (replace and not known[name].shipped):
            fail(f"register {name!r} exists ({known[name].source}); --replace replaces one of yours", 2)
        rows = read_examples(examples)
        descriptions = {
            "ru": description_ru or f"Регистр {name}: голос примеров из {examples.name}.",
            "en": description_en or f"The {name} register: the voice of the examples in {examples.name}.",
        }
        folder = user_folder(settings.registers_path, settings.data_dir)
        files = write_register(name, rows, folder, symbol, descriptions, replace=replace)
    except (ValueError, FileExistsError, CatalogueError) as exc:
        fail(str(exc), 2)
    say = (lambda line: typer.echo(line, err=True)) if not as_json else (lambda line: None)
    try:
        with_it = Catalogue.load(folders_from(settings.registers_path, settings.data_dir))
        say(f"refitting the scene router's head with {name} ({len(rows)} examples)")
        with progress_to_stderr():
            report = refit(with_it, settings, floor=floor, say=say)
    except (ValueError, CatalogueError) as exc:
        remove_files(files, name)
        fail(str(exc))
    if report.refused:
        remove_files(files, name)
        if as_json:
            print_json({"register": name, "router": report.as_dict(), "added": False})
        fail(f"register {name} not added: {report.refused}")
    use(with_it)
    result: dict = {"register": name, "added": True, "files": {k: str(v) for k, v in files.items()}}
    result["router"] = report.as_dict()
    if train_adapter:
        from scenestream.agents.decoder.base_model import base_model_path
        from scenestream.training.train import TrainConfig
        from scenestream.training.train import train as run_training

        say(f"training the {name} adapter")
        cfg = TrainConfig(register=name, out=files["adapters"], epochs=epochs)
        with progress_to_stderr():
            result["training"] = run_training(cfg, base_model_path(settings))
    stack = reachable(settings) if publish_it else None
    if stack is not None:
        change = change_of(name, stack)
        import asyncio

        asyncio.run(publish(stack, change))
        result["published"] = change
    else:
        result["published"] = None
    if as_json:
        print_json(result)
        return
    for embedder, after in report.after.items():
        before = report.before[embedder]
        line = ", ".join(f"{r} {before.get(r, float('nan')):.3f}→{a:.3f}" for r, a in after.items())
        typer.echo(f"router ({embedder}, held-out accuracy before→after): {line}")
    version = catalogue()[name].adapter_version(settings.adapters_dir)
    typer.echo(
        f"register {name} added: {files['file']}; adapter {version or 'not trained'}; "
        + ("published to the running stack" if stack is not None else "no running stack to publish to")
    )
