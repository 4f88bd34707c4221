"""`scenestream scene`: one text, or JSON lines in → scene JSON lines out, in order, errors inline."""

import io
import json
import subprocess
import sys

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
    errors = run_lines(io.StringIO("\n".join(lines) + "\n"), out, Settings())
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == len(lines) and errors == 5
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


def fake_ask(monkeypatch, pieces):
    """ask_once replaced: it streams ``pieces`` and answers with their join, on a real scene."""
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

    async def ask_once(text, session, timeout, register=None, on_piece=None):
        assert register == "poet"
        for seq, piece in enumerate(pieces):
            if on_piece:
                on_piece(LoraOutput(**answer, text=piece, final=False, seq=seq))
        output = LoraOutput(**answer, text="".join(pieces), completion_tokens=7, timings_ms={"first_token": 40.0})
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
    assert f"scene:       {scene.scene_id}" in result.stdout and "answer:      7 tokens, first token 40 ms" in lines


def test_render_without_an_answer():
    from scenestream.commands.client import render

    text = render(
        {"message_id": "m", "session_id": "s", "stack": "running", "scene": None, "timings": {"pipeline_ms": 12.0}}
    )
    assert text == "message m  session s  (running stack, 12 ms through the pipeline)"
