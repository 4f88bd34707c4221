"""The register catalogue from the command line.

scenestream register list [--json]       # every register, where it is declared, its adapter and version
scenestream register publish NAME [--json] # a running stack takes NAME as its file now declares it
scenestream register remove NAME [--json]  # a running stack forgets NAME: its adapter unloaded, never routed to
"""

from __future__ import annotations

import typer

from scenestream.commands.common import connected_settings, fail, json_option, print_human, print_json
from scenestream.settings import get_settings

register_app = typer.Typer(
    help="The registers: declared one file each in registers/ and in the folders on SCENESTREAM_REGISTERS_PATH.",
    no_args_is_help=True,
)


def describe(settings) -> list[dict]:
    """Each register of the catalogue as a JSON-able dict: its declaration, its adapter folder as the decoder
    looks it up (``SCENESTREAM_ADAPTERS_DIR`` first) and that adapter's version."""
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
                "decoder_examples": [str(p) for p in decl.decoder_examples],
                "router_examples": [str(p) for p in decl.router_examples],
            }
        )
    return rows


@register_app.command("list")
def register_list(as_json: bool = json_option()) -> None:
    """Every register of the catalogue, in order: its symbol, the file that declares it, its adapter folder and
    the adapter's version (name@content hash of its weights; none: answered by the base model)."""
    from rich.table import Table

    from scenestream.schemas.registers import CatalogueError

    try:
        rows = describe(get_settings())
    except CatalogueError as exc:
        fail(str(exc))
    if as_json:
        print_json(rows)
        return
    table = Table("register", "symbol", "adapter version", "declared in", "description (en)")
    for row in rows:
        table.add_row(
            row["name"], row["symbol"], row["adapter_version"] or "none", row["file"], row["description"]["en"]
        )
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
