"""`scenestream scene`: one text, or JSON lines in → scene JSON lines out, in order, errors inline."""

import io
import json
import os
import subprocess
import sys

import pytest

from scenestream.commands.client import run_lines
from scenestream.settings import Settings


def test_json_lines_in_order_with_errors_inline():
    lines = [
        json.dumps({"text": "Почему я не чувствую шаг в себе?"}, ensure_ascii=False),
        "{not json",
        json.dumps({"txt": "wrong field"}),
        "",
        json.dumps({"text": "   "}),
        json.dumps([1, 2]),
        json.dumps({"text": "The tide pulls the moon's silver thread", "message_id": "given-id"}),
    ]
    out = io.StringIO()
    done = run_lines(io.StringIO("\n".join(lines) + "\n"), out, Settings())
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == len(lines) and done == (5, 0) and done.errors == 5
    assert not any("formula" in r or "image" in r for r in rows)  # no outputs asked for, none added
    assert rows[0]["lang"] == "ru" and rows[0]["linkage"].count("·") == 2
    assert [r.get("line") for r in rows[1:6]] == [2, 3, 4, 5, 6]
    assert "invalid JSON" in rows[1]["error"] and "text" in rows[2]["error"]
    assert "empty" in rows[4]["error"]
    assert rows[6]["message_id"] == "given-id" and rows[6]["register"] in {"poet", "body", "philosopher", "logician"}


def test_same_text_same_scene_id():
    out = io.StringIO()
    run_lines(io.StringIO('{"text": "тишина"}\n{"text": "тишина"}\n'), out, Settings())
    a, b = [json.loads(line) for line in out.getvalue().splitlines()]
    assert a["scene_id"] == b["scene_id"] and a["delta_code"] == b["delta_code"]


def test_command_prints_a_full_scene():
    out = subprocess.run(
        [sys.executable, "-m", "scenestream", "scene", "Почему я не чувствую шаг в себе?"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    scene = json.loads(out.stdout)
    for key in ("scene_id", "hypertokens", "linkage", "delta_code", "field", "registers", "register", "lang", "stage"):
        assert key in scene
    assert scene["stage"] == "formed" and scene["lang"] == "ru"


def test_command_refuses_empty_text_clearly():
    out = subprocess.run(
        [sys.executable, "-m", "scenestream", "scene", "  "], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "empty" in out.stderr and "Traceback" not in out.stderr


def test_scene_text_prints_one_json_document_with_or_without_json():
    from typer.testing import CliRunner

    from scenestream.cli import app

    docs = []
    for args in (["scene", "тишина и дрожь"], ["scene", "--json", "тишина и дрожь"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        docs.append(json.loads(result.stdout))
    assert docs[0]["scene_id"] == docs[1]["scene_id"]
    assert docs[0]["text"] == "тишина и дрожь" and docs[0]["stage"] == "formed"


def test_scene_over_stdin_prints_json_lines():
    from typer.testing import CliRunner

    from scenestream.cli import app

    result = CliRunner().invoke(app, ["scene"], input='{"text": "the sea"}\nnot json\n{"text": "тишина"}\n')
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r.get("lang") for r in rows] == ["en", None, "ru"] and rows[1]["line"] == 2


def fake_ask(monkeypatch, pieces, during=None):
    """ask_once replaced: it streams ``pieces`` and answers with their join, on a real scene; ``during()`` is
    called while the "pipeline" runs (the world changing under it)."""
    import types

    from scenestream.commands.client import one_scene
    from scenestream.schemas.records import LoraOutput

    scene = one_scene("тишина и дрожь", Settings())
    answer = dict(
        message_id=scene.message_id,
        session_id="s",
        scene_id=scene.scene_id,
        register="poet",
        adapter="poet",
        engine="transformers",
        model="m",
        delta_code=scene.delta_code,
        symbol="~",
    )

    async def ask_once(text, session, timeout, register=None, on_piece=None, on_answer=None):
        assert register == "poet"
        if during is not None:
            during()
        for seq, piece in enumerate(pieces):
            if on_piece:
                on_piece(LoraOutput(**answer, text=piece, final=False, seq=seq))
        output = LoraOutput(**answer, text="".join(pieces), completion_tokens=7, timings_ms={"first_token": 40.0})
        if on_answer:
            on_answer(output)
            print("[shutdown] the stack stops")  # what an embedded stack's engine may print as it stops
        return {
            "message_id": scene.message_id,
            "session_id": "s",
            "stack": "embedded",
            "scene": scene,
            "output": output,
            "timings": {"startup_ms": 1.0, "pipeline_ms": 90.0},
        }

    module = types.ModuleType("scenestream.ask")
    module.ask_once = ask_once
    monkeypatch.setitem(sys.modules, "scenestream.ask", module)
    return scene


def test_ask_json_is_one_document_and_human_streams_the_answer(monkeypatch):
    from typer.testing import CliRunner

    from scenestream.cli import app

    scene = fake_ask(monkeypatch, ["Тишина ", "дрожит."])
    result = CliRunner().invoke(app, ["ask", "--json", "--register", "poet", "тишина и дрожь"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["output"]["text"] == "Тишина дрожит." and doc["scene"]["scene_id"] == scene.scene_id
    result = CliRunner().invoke(app, ["ask", "--register", "poet", "тишина и дрожь"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "~ poet (poet adapter, transformers):" and lines[1] == "Тишина дрожит."
    assert lines[2:4] == ["", "[shutdown] the stack stops"]  # the answer's line ends before the stack stops
    assert f"scene:       {scene.scene_id}" in result.stdout and "answer:      7 tokens, first token 40 ms" in lines


def test_ask_that_fails_after_its_answer_keeps_the_answer_and_ends_its_line_once(monkeypatch):
    import types

    from typer.testing import CliRunner

    from scenestream.cli import app
    from scenestream.schemas.records import LoraOutput

    answer = dict(message_id="m", session_id="s", scene_id="c", register="poet", adapter="poet", engine="e", model="m")
    answer.update(delta_code="Δ13", symbol="~")

    async def ask_once(text, session, timeout, register=None, on_piece=None, on_answer=None):
        on_piece(LoraOutput(**answer, text="Тишина ", final=False, seq=0))
        on_answer(LoraOutput(**answer, text="Тишина дрожит."))
        raise TimeoutError("no memory link within 1 s")

    module = types.ModuleType("scenestream.ask")
    module.ask_once = ask_once
    monkeypatch.setitem(sys.modules, "scenestream.ask", module)
    result = CliRunner().invoke(app, ["ask", "--register", "poet", "тишина и дрожь"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == ["Тишина дрожит.", ""]  # the answer's line ended once, not twice


def test_render_without_an_answer():
    from scenestream.commands.client import render

    text = render(
        {"message_id": "m", "session_id": "s", "stack": "running", "scene": None, "timings": {"pipeline_ms": 12.0}}
    )
    assert text == "message m  session s  (running stack, 12 ms through the pipeline)"


# --- the outputs: --image, --voice, --formula (no broker: ask_once is replaced, scene is LLM-free) -------------

SVG = "{http://www.w3.org/2000/svg}svg"


def invoke(args, input=None):
    from typer.testing import CliRunner

    from scenestream.cli import app

    return CliRunner().invoke(app, args, input=input)


def flat(text: str) -> str:
    """The parser's message as one line: rich's error box and its line breaks taken out."""
    return " ".join(text.replace("│", " ").split())


def refuse(monkeypatch, name):
    """``name``, the module that does the command's work, fails the test when touched."""
    import types

    class Refusing(types.ModuleType):
        def __getattr__(self, attr):
            raise AssertionError(f"{name}.{attr} was reached: the command did work before refusing")

    monkeypatch.setitem(sys.modules, name, Refusing(name))


def wav_seconds(path) -> float:
    import wave

    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return wav.getnframes() / wav.getframerate()


@pytest.mark.parametrize(
    "options, said",
    [
        (["--image", "{tmp}/scene.jpg"], "'.jpg'"),
        (["--image", "{tmp}/scene"], "no suffix"),
        (["--voice", "{tmp}/answer.mp3"], ".wav or .ogg"),
        (["--voice", "{tmp}/answer.svg"], "'.svg'"),
        (["--image", "{tmp}/missing/scene.svg"], "does not exist"),
        (["--image", "{tmp}/folder.svg"], "is a folder"),
    ],
)
def test_ask_refuses_a_wrong_output_file_before_any_work(monkeypatch, tmp_path, options, said):
    refuse(monkeypatch, "scenestream.ask")
    (tmp_path / "folder.svg").mkdir()
    result = invoke(["ask", "тишина", *[o.format(tmp=tmp_path) for o in options]])
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output and said in flat(result.output)
    assert [p.name for p in tmp_path.iterdir()] == ["folder.svg"]  # nothing written


def test_scene_refuses_a_wrong_image_file_before_any_work(monkeypatch, tmp_path):
    refuse(monkeypatch, "scenestream.offline")
    result = invoke(["scene", "тишина", "--image", str(tmp_path / "scene.gif")])
    assert result.exit_code == 2 and "'.gif'" in flat(result.output)
    result = invoke(["scene", "--image", str(tmp_path / "no" / "scene.svg")], input='{"text": "x"}\n')
    assert result.exit_code == 2 and "does not exist" in flat(result.output)


def test_ask_without_espeak_stops_before_the_pipeline(monkeypatch, tmp_path):
    refuse(monkeypatch, "scenestream.ask")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no espeak-ng
    result = invoke(["ask", "тишина", "--voice", str(tmp_path / "answer.wav")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: voice: speech needs espeak-ng, which is not on PATH: apt-get install espeak-ng"
    ]
    assert result.stdout == "" and not (tmp_path / "answer.wav").exists()


def test_ask_json_writes_the_outputs_and_names_them(monkeypatch, tmp_path):
    from xml.etree import ElementTree

    from scenestream.outputs.formula import Formula, parse_formula

    scene = fake_ask(monkeypatch, ["Тишина ", "дрожит."])
    image, voice = tmp_path / "scene.svg", tmp_path / "answer.wav"
    result = invoke(
        ["ask", "--json", "--register", "poet", "тишина и дрожь", "--image", str(image), "--voice", str(voice)]
        + ["--formula"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["image"] == str(image) and doc["voice"] == str(voice) and "errors" not in doc
    assert doc["output"]["text"] == "Тишина дрожит."
    assert ElementTree.parse(image).getroot().tag == SVG
    assert wav_seconds(voice) > 0.3
    assert parse_formula(doc["formula"]) == Formula.from_scene(scene)
    assert doc["formula"].startswith(scene.delta_code + " = ")


def test_ask_human_view_lists_the_outputs(monkeypatch, tmp_path):
    from scenestream.outputs.formula import format_formula

    scene = fake_ask(monkeypatch, ["Тишина ", "дрожит."])
    png = tmp_path / "scene.png"
    result = invoke(["ask", "--register", "poet", "тишина и дрожь", "--image", str(png), "--formula"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "Тишина дрожит."
    assert lines[-2:] == [f"formula:     {format_formula(scene)}", f"image:       {png}"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_voice_failing_after_the_answer_keeps_the_answer(monkeypatch, tmp_path):
    """espeak-ng was there when the command started and is gone when the answer comes: the answer and the
    other outputs are printed, the voice is null with its reason, one error line, exit 1."""
    empty = tmp_path / "bin"
    empty.mkdir()
    fake_ask(monkeypatch, ["Тишина ", "дрожит."], during=lambda: monkeypatch.setenv("PATH", str(empty)))
    image, voice = tmp_path / "scene.svg", tmp_path / "answer.ogg"
    args = ["ask", "--register", "poet", "тишина и дрожь", "--image", str(image), "--voice", str(voice)]
    result = invoke([*args, "--json", "--formula"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["output"]["text"] == "Тишина дрожит." and doc["image"] == str(image) and doc["formula"]
    assert doc["voice"] is None and "espeak-ng" in doc["errors"]["voice"] and list(doc["errors"]) == ["voice"]
    assert result.stderr.splitlines() == [f"error: voice: {doc['errors']['voice']}"]
    assert image.exists() and not voice.exists()
    monkeypatch.setenv("PATH", os.environ["PATH"].replace(str(empty), "/usr/bin:/bin"))
    result = invoke(args)  # the human view: the answer, then the error
    assert result.exit_code == 1 and result.stdout.splitlines()[1] == "Тишина дрожит."
    assert f"image:       {image}" in result.stdout and "voice:" not in result.stdout
    assert result.stderr.startswith("error: voice: speech needs espeak-ng") and "Traceback" not in result.output


def test_an_image_folder_gone_during_the_pipeline_is_one_error_line(monkeypatch, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fake_ask(monkeypatch, ["Тишина."], during=out.rmdir)
    result = invoke(["ask", "--json", "--register", "poet", "тишина", "--image", str(out / "scene.svg")])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["image"] is None and doc["output"]["text"] == "Тишина."
    assert result.stderr.splitlines() == [f"error: image: cannot write {out / 'scene.svg'}: No such file or directory"]


def test_scene_text_with_image_and_formula(tmp_path):
    from xml.etree import ElementTree

    from scenestream.outputs.formula import parse_formula

    image = tmp_path / "scene.svg"
    result = invoke(["scene", "Почему я не чувствую шаг в себе?", "--image", str(image), "--formula"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["image"] == str(image) and doc["stage"] == "formed"
    root = ElementTree.parse(image).getroot()
    assert root.tag == SVG and doc["delta_code"] in ElementTree.tostring(root, encoding="unicode")
    formula = parse_formula(doc["formula"])
    assert formula.delta_code == doc["delta_code"]
    assert list(formula.concepts) == doc["linkage"].split("·")
    assert [name for name, _ in formula.registers] == [r["name"] for r in doc["registers"] if r["weight"] >= 0.2]


def test_scene_over_stdin_numbers_the_pictures_by_input_line(tmp_path):
    lines = '{"text": "the sea"}\nnot json\n{"text": "тишина"}\n'
    result = invoke(["scene", "--image", str(tmp_path / "s.svg"), "--formula"], input=lines)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["image"] == str(tmp_path / "s-1.svg") and rows[2]["image"] == str(tmp_path / "s-3.svg")
    assert rows[1] == {"error": "invalid JSON: Expecting value", "line": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-1.svg", "s-3.svg"]
    assert rows[0]["formula"].startswith(rows[0]["delta_code"] + " = ")


def test_scene_over_stdin_reports_failed_pictures_and_goes_on(tmp_path):
    (tmp_path / "s-2.svg").symlink_to("/dev/full")  # line 2's picture cannot be written: the disk is full
    out = io.StringIO()
    done = run_lines(
        io.StringIO('{"text": "the sea"}\n{"text": "тишина"}\n'), out, Settings(), image=tmp_path / "s.svg"
    )
    assert done == (0, 1)
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["image"] == str(tmp_path / "s-1.svg") and "errors" not in first
    assert second["image"] is None and "No space left on device" in second["errors"]["image"]
    assert second["lang"] == "ru"  # the scene itself is still there
    result = invoke(["scene", "--image", str(tmp_path / "s.svg")], input='{"text": "a"}\n{"text": "b"}\n')
    assert result.exit_code == 1 and len(result.stdout.splitlines()) == 2
    assert result.stderr.splitlines() == ["error: 1 scene(s) lack an output asked for: their 'errors' field says why"]
