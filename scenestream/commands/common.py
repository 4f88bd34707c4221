"""What every command room shares: failing clearly, the connected settings, one JSON printer, the option types.

A command that prints a result prints, with ``--json``, exactly one JSON document on stdout
(:func:`print_json`) and otherwise a human rendering (:func:`print_human`); progress and logs go
to stderr (:func:`progress_to_stderr`). Fixed sets of option values are checked here, by the
option parser, against the one place each set is declared.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any, Callable, Iterator, Literal, Sequence, get_args, get_origin

import typer

from scenestream.settings import Settings, get_settings


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on stderr and exit with ``code`` (2: the command line was wrong)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def connected_settings() -> Settings:
    """Settings with the broker of a configured cluster or a stack running on this machine."""
    from scenestream.broker import reachable

    settings = reachable(get_settings())
    if settings is None:
        fail(
            "no broker: set SCENESTREAM_BROKER=kafka://host:port, or start `scenestream run` "
            "(or `scenestream broker`) on this machine first"
        )
    return settings


# ----------------------------------------------------------------------------------------------- output


def json_option(help: str = "Print one JSON document on stdout (progress and logs on stderr).") -> Any:
    """The ``--json`` flag of a command that prints a result."""
    return typer.Option(False, "--json", help=help)


def _jsonable(obj: Any) -> Any:
    # records and bytes: the codec's view (imported here: it needs msgpack and orjson, which the GPU
    # machine's minimal environment lacks, and `bench gpu --json` prints plain dicts only)
    from scenestream.schemas.codec import to_jsonable

    converted = to_jsonable(obj)
    if converted is obj:
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
    return converted


def json_text(doc: Any) -> str:
    """``doc`` as one JSON document (records as the codec shows them, non-ASCII kept)."""
    return json.dumps(doc, indent=2, ensure_ascii=False, default=_jsonable)


def print_json(doc: Any) -> None:
    """Print ``doc`` as the command's one JSON document on stdout."""
    typer.echo(json_text(doc))


def as_text(*renderables: Any, width: int = 120) -> str:
    """Rich renderables (tables, text) as plain text, the way :func:`print_human` shows them without colour."""
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False, markup=False, emoji=False)
    console.print(*renderables)
    return out.getvalue().rstrip("\n")


def print_human(*renderables: Any) -> None:
    """Print rich renderables (or strings) on stdout, the human view of a result."""
    from rich.console import Console

    # the figures and answers are data: no rich markup or emoji codes read into them; piped into a file or
    # another program, tables keep rich's usual width for a terminal of 120 columns instead of 80
    terminal = sys.stdout.isatty()
    Console(file=sys.stdout, markup=False, emoji=False, width=None if terminal else 120).print(*renderables)


@contextlib.contextmanager
def progress_to_stderr() -> Iterator[None]:
    """While the work runs, whatever it prints (rich progress bars use stdout by default) goes to stderr,
    so stdout holds only the result."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


# ------------------------------------------------------------------------------------------- option types


def literal_values(annotation: Any) -> tuple[str, ...]:
    """The values a ``Literal`` type allows, through ``Optional``/unions (``None`` left out)."""
    if get_origin(annotation) is Literal:
        return tuple(v for v in get_args(annotation) if v is not None)
    return tuple(v for arg in get_args(annotation) if arg is not type(None) for v in literal_values(arg))


def setting_values(field: str) -> tuple[str, ...]:
    """The values the setting ``field`` takes (its ``Literal`` type in scenestream/settings.py)."""
    return literal_values(Settings.model_fields[field].annotation)


ENGINES = setting_values("engine")
LORA_KERNELS = setting_values("lora_kernel")
SCENE_EMBEDDERS = setting_values("scene_embedder")
# an option typed EngineName gets Typer's own choice check; Literal[tuple] is Literal[*tuple]
EngineName = Literal[ENGINES]  # type: ignore[valid-type]


def _registers() -> Sequence[str]:
    # imported when a command line is parsed, not when the CLI is: scenestream.schemas needs msgpack and
    # orjson, which the GPU machine's environment lacks (tests/unit/ops/test_bench_gpu.py)
    from scenestream.schemas.registers import catalogue

    return catalogue().names


def _stages() -> Sequence[str]:
    from scenestream.topology import STAGE_NAMES

    return STAGE_NAMES


def one_of(values: Callable[[], Sequence[str]], commas: bool = False) -> Callable[[Any], Any]:
    """A callback for an option whose values come from the fixed set ``values()`` declares.

    The option may be single or repeated; with ``commas`` each occurrence may also list several values
    (``--stages tokenizer,scene --stages decoder``), and the command gets one flat list. A value outside
    the set exits 2 with the parser's usual "Invalid value" message, before the command runs."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        given = [value] if isinstance(value, str) else list(value)
        names = [part.strip() for item in given for part in item.split(",") if part.strip()] if commas else given
        allowed = tuple(values())
        for name in names:
            if name not in allowed:
                raise typer.BadParameter(f"{name!r} is not one of {', '.join(allowed)}")
        if commas:
            if not names:
                raise typer.BadParameter(f"name at least one of {', '.join(allowed)}")
            return names
        return value

    return check


register_choice = one_of(_registers)  # single or repeated --register
stages_choice = one_of(_stages, commas=True)
kernels_choice = one_of(lambda: LORA_KERNELS, commas=True)
embedders_choice = one_of(lambda: SCENE_EMBEDDERS, commas=True)
# the registers are read only when a command line is parsed (see _registers), so help cannot list them
REGISTER_HELP = "a register of the catalogue (`scenestream register list`; a wrong name lists them)"
