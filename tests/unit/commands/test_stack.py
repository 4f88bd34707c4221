"""`scenestream settings`, `topics list`, `ingest`: one JSON document with --json, human lines without."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from scenestream.cli import app
from scenestream.settings import Settings


def test_settings_json_is_one_document_of_every_setting():
    result = CliRunner().invoke(app, ["settings", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {f"SCENESTREAM_{name.upper()}" for name in Settings.model_fields}
    assert doc["SCENESTREAM_LORA_KERNEL"]["meaning"] and "value" in doc["SCENESTREAM_BROKER"]


def test_settings_table():
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0 and "SCENESTREAM_ENGINE" in result.stdout


def test_topics_list_json_is_one_document():
    result = CliRunner().invoke(app, ["topics", "list", "--json"])
    assert result.exit_code == 0, result.output
    topics = json.loads(result.stdout)
    assert [t["name"] for t in topics][:2] == ["raw-text", "tokens"]
    assert all(t["dlq"] in (t["name"] + ".dlq", None) and t["partitions"] >= 1 for t in topics)
    # cancel records, register changes and decoder reports come from scenestream itself: nothing to refuse
    no_dlq = ["control", "registers", "decoder-status", "worker-status"]
    assert [t["name"] for t in topics if t["dlq"] is None] == no_dlq
    assert [t["name"] for t in topics if t["compacted"]] == ["registers", "decoder-status"]  # the latest of each
    human = CliRunner().invoke(app, ["topics", "list"]).stdout.splitlines()
    assert len(human) == len(topics) and human[0].startswith("raw-text")


def test_topics_create_refuses_without_a_cluster(monkeypatch):
    from scenestream.settings import get_settings

    monkeypatch.delenv("SCENESTREAM_BROKER", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["topics", "create", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "SCENESTREAM_BROKER" in result.output and result.stdout == ""


def test_ingest_prints_one_document_or_one_line_per_message(monkeypatch):
    import scenestream.client
    from scenestream.commands import stack

    published = []

    async def publish(settings, records):
        published.extend(records)

    monkeypatch.setattr(scenestream.client, "publish", publish)
    monkeypatch.setattr(stack, "connected_settings", Settings)
    lines = 'тишина\n{"text": "the sea", "session_id": "s-1"}\n{broken\n'
    result = CliRunner().invoke(app, ["ingest", "--json"], input=lines)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [m["message_id"] for m in doc["messages"]] == [r.message_id for r in published]
    assert doc["messages"][1]["session_id"] == "s-1" and doc["errors"][0]["line"] == 3
    result = CliRunner().invoke(app, ["ingest", "--session", "cli-1"], input=lines)
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert len(out) == 2 and out[0] == f"{published[2].message_id}  session cli-1"
    assert "line 3 skipped" in result.stderr


def test_ingest_refuses_a_text_over_the_limit_before_publishing(monkeypatch):
    import scenestream.client
    from scenestream.commands import stack

    published = []

    async def publish(settings, records):
        published.extend(records)

    monkeypatch.setattr(scenestream.client, "publish", publish)
    monkeypatch.setattr(stack, "connected_settings", lambda: Settings(max_text_bytes=64))
    result = CliRunner().invoke(app, ["ingest", "--json"], input="short one\n" + "длинный " * 20 + "\n")
    doc = json.loads(result.stdout)
    assert [r.text for r in published] == ["short one"]
    assert doc["errors"][0]["line"] == 2 and "over the limit of 64" in doc["errors"][0]["error"]


def test_ask_refuses_a_text_over_the_limit_before_any_stack_starts():
    import asyncio

    import pytest

    from scenestream.ask import ask_once
    from scenestream.client import TextRefused

    with pytest.raises(TextRefused, match="SCENESTREAM_MAX_TEXT_BYTES"):
        asyncio.run(ask_once("x" * 100, settings=Settings(max_text_bytes=64, broker=None)))
