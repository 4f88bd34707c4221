"""`scenestream trace`, `history`, `replay`: --json prints one JSON document (an array for history and replay),
without it the human lines. The archive and the decoder are replaced by canned data."""

from __future__ import annotations

import json
import sys
import types

import pytest
from typer.testing import CliRunner

from scenestream.cli import app
from scenestream.schemas.records import DeadLetter, LoraOutput

ROW = {
    "scene_id": "sc1",
    "message_id": "m1",
    "session_id": "s",
    "ts_ms": 1700000000000,
    "delta_code": "Δ7",
    "register": "poet",
    "resonance": 0.42,
    "text": "тишина и дрожь",
    "linkage": "a·b·c",
    "answer": "Тишина.",
    "answer_adapter": "poet",
    "answer_register": "poet",
}
NEW = LoraOutput(
    message_id="m1",
    session_id="s",
    scene_id="sc1",
    text="Новая тишина.",
    register="poet",
    adapter="poet",
    engine="transformers",
    model="m",
    delta_code="Δ7",
    replay_of="m1",
)


@pytest.fixture
def archive(monkeypatch):
    module = types.ModuleType("scenestream.audit")

    def trace(message_id, settings, broker):
        letter = DeadLetter(
            message_id=message_id,
            key=b"s",
            value=b"\xff",
            stage="tokenizer",
            reason="empty",
            error_type="empty_text",
            topic="raw-text",
            partition=0,
            offset=3,
        )
        return {
            "message_id": message_id,
            "archive": ROW,
            "timings_ms": {"scene": 1.5},
            "topics": {"raw-text.dlq": [{"offset": 3, "partition": 0, "timestamp_ms": 1, "record": letter}]},
        }

    module.trace = trace
    module.history = lambda session, settings, since: [ROW] if session == "s" else []
    module.replay = lambda session, settings, register, engine, since, versions: [
        {
            "scene_id": "sc1",
            "message_id": "m1",
            "ts_ms": ROW["ts_ms"],
            "text": ROW["text"],
            "old": {"register": "poet", "text": "Тишина."},
            "new": NEW,
        }
    ]
    monkeypatch.setitem(sys.modules, "scenestream.audit", module)


def test_trace(archive):
    doc = json.loads(CliRunner().invoke(app, ["trace", "m1", "--json"]).stdout)
    assert doc["archive"]["scene_id"] == "sc1" and doc["topics"]["raw-text.dlq"][0]["record"]["reason"] == "empty"
    human = CliRunner().invoke(app, ["trace", "m1"]).stdout
    assert "scene sc1 Δ7 poet session s: тишина и дрожь" in human
    assert "raw-text.dlq[0]@3  DeadLetter tokenizer" in human and "timings ms: scene 1.5" in human


def test_history_json_is_one_array(archive):
    result = CliRunner().invoke(app, ["history", "--session", "s", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == [ROW]
    assert "Δ7" in CliRunner().invoke(app, ["history", "-s", "s"]).stdout
    empty = CliRunner().invoke(app, ["history", "-s", "other", "--json"])
    assert json.loads(empty.stdout) == [] and "no archived scenes" in empty.stderr


def test_replay_json_is_one_array(archive):
    result = CliRunner().invoke(
        app, ["replay", "--session", "s", "--register", "poet", "--engine", "transformers", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 1 and rows[0]["new"]["text"] == "Новая тишина." and rows[0]["new"]["replay_of"] == "m1"
    human = CliRunner().invoke(app, ["replay", "-s", "s"]).stdout.splitlines()
    assert human == ["— m1: тишина и дрожь", "  old [poet/?]: Тишина.", "  new [poet/poet]: Новая тишина."]


def test_replay_with_a_forced_register_answers_with_todays_adapters_only(archive):
    result = CliRunner().invoke(app, ["replay", "-s", "s", "--register", "poet", "--versions", "answered"])
    assert result.exit_code == 2 and "--versions current" in result.output
    result = CliRunner().invoke(app, ["replay", "-s", "s", "--versions", "yesterday"])
    assert result.exit_code == 2
