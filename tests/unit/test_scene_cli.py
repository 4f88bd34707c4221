"""`scenestream scene`: one text, or JSON lines in → scene JSON lines out, in order, errors inline."""

import io
import json
import subprocess
import sys

from scenestream.scene_cli import run_lines
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
    out = subprocess.run([sys.executable, "-m", "scenestream", "scene", "Почему я не чувствую шаг в себе?"],
                         capture_output=True, text=True, timeout=120, check=True)
    scene = json.loads(out.stdout)
    for key in ("scene_id", "hypertokens", "linkage", "delta_code", "field", "registers", "register", "lang", "stage"):
        assert key in scene
    assert scene["stage"] == "formed" and scene["lang"] == "ru"


def test_command_refuses_empty_text_clearly():
    out = subprocess.run([sys.executable, "-m", "scenestream", "scene", "  "], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "empty" in out.stderr and "Traceback" not in out.stderr
