"""The register catalogue from the command line.

scenestream register list [--json]     # every register, where it is declared, its adapter and version
"""

from __future__ import annotations

import typer

from scenestream.commands.common import fail, json_option, print_human, print_json
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
