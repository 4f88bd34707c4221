"""The assembled `scenestream` command: every command has help, fixed-set options are checked by the parser
before any work, and the CLI imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import typer
from typer.testing import CliRunner

from scenestream.cli import app

HEAVY = ("torch", "vllm", "faust", "aiokafka", "transformers")


def command_paths(command=None, path=()) -> list[tuple[str, ...]]:
    command = command or typer.main.get_command(app)
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_paths(sub, path + (name,))
    return found


PATHS = command_paths()


def test_every_command_of_the_issue_is_there():
    names = {" ".join(path) for path in PATHS}
    assert names >= {
        "run",
        "broker",
        "ingest",
        "tail",
        "topics list",
        "topics create",
        "settings",
        "ask",
        "scene",
        "trace",
        "history",
        "replay",
        "setup",
        "train",
        "sample-answers",
        "bench transport",
        "bench scene",
        "bench decoder",
        "bench quality",
        "bench memory",
        "bench e2e",
        "bench lora",
        "bench gpu",
    }


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "scenestream")
def test_help(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_import_and_help_stay_light():
    """`scenestream --help` (every command's) must not import the engines, the stream processor or Kafka."""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom scenestream.cli import app\n"
        f"for path in {[list(p) for p in PATHS]!r}:\n"
        "    assert CliRunner().invoke(app, [*path, '--help']).exit_code == 0, path\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def refusing_module(name: str) -> types.ModuleType:
    """A stand-in for the module that does a command's work: touching it fails the test."""

    class Refusing(types.ModuleType):
        def __getattr__(self, attr):
            raise AssertionError(f"{name}.{attr} was reached: the command did work before refusing")

    return Refusing(name)


@pytest.mark.parametrize(
    "args, work",
    [
        (["ask", "--register", "poetess", "text"], "scenestream.ask"),
        (["train", "--register", "Poet"], "scenestream.training.train"),
        (["sample-answers", "--register", "bard"], "scenestream.training.sampling"),
        (["replay", "--session", "s", "--register", "logic"], "scenestream.audit"),
        (["bench", "quality", "--register", "poet", "-r", "nobody"], "scenestream.ops.bench_decoder"),
        (["replay", "--session", "s", "--engine", "llama"], "scenestream.audit"),
        (["run", "--stages", "tokenizer,dreamer"], "scenestream.runtime"),
        (["run", "--stages", "tokenizer", "--stages", "dreamer"], "scenestream.runtime"),
    ],
)
def test_a_wrong_choice_exits_2_before_any_work(monkeypatch, args, work):
    monkeypatch.setitem(sys.modules, work, refusing_module(work))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output


def test_stages_take_commas_and_repeats(monkeypatch):
    """run --stages a,b --stages c hands the runtime one flat list of names."""
    chosen = {}

    def select_stages(names, settings):
        chosen["names"] = names
        raise ValueError("stop here")  # before a broker starts

    fake = types.ModuleType("scenestream.runtime")
    fake.select_stages, fake.run_worker = select_stages, None
    monkeypatch.setitem(sys.modules, "scenestream.runtime", fake)
    result = CliRunner().invoke(app, ["run", "--stages", "tokenizer,scene", "--stages", "decoder"])
    assert result.exit_code == 2 and "stop here" in result.output
    assert chosen["names"] == ["tokenizer", "scene", "decoder"]


def test_choices_come_from_their_declarations():
    from scenestream.commands.common import ENGINES, LORA_KERNELS, SCENE_EMBEDDERS, literal_values
    from scenestream.settings import Settings

    assert set(ENGINES) == {"vllm", "openai", "transformers"}  # Optional[Literal[...]]: None left out
    assert LORA_KERNELS == literal_values(Settings.model_fields["lora_kernel"].annotation)
    assert SCENE_EMBEDDERS == literal_values(Settings.model_fields["scene_embedder"].annotation)
