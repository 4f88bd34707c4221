"""The live feed (scenestream/api/feed.py): which records become which events, for which tenant; slow readers."""

from __future__ import annotations

import asyncio

import pytest

from scenestream.api.feed import Feed, event_of
from scenestream.schemas.codec import encode
from scenestream.schemas.records import DeadLetter, LoraOutput, RawText
from tests.unit.outputs.conftest import build_scene


def output(**overrides) -> LoraOutput:
    values = dict(
        message_id="m-1",
        session_id="s-1",
        scene_id="sc-1",
        tenant="acme",
        text="Тишина",
        register="body",
        adapter="body",
        engine="transformers",
        model="gemma",
        delta_code="Δ41",
    )
    return LoraOutput(**{**values, **overrides})


def dead_letter(value: bytes | None, **overrides) -> DeadLetter:
    values = dict(topic="raw-text", partition=0, offset=3, value=value, stage="tokenizer", reason="too long")
    return DeadLetter(**{**values, "error_type": "InputError", "message_id": "m-9", **overrides})


def test_the_answered_scene_becomes_a_scene_event_with_its_text():
    tenant, event = event_of(build_scene(tenant="acme"), "resonated")
    assert tenant == "acme" and event["type"] == "scene"
    assert event["text"].startswith("Почему") and event["delta_code"] == "Δ41" and event["symbol"] == "🫁"
    assert [r["name"] for r in event["registers"]] == ["philosopher", "body", "poet", "logician"]
    assert event["field"]["rhythm"] == "fragmented" and len(event["echoes"]) == 3
    assert event_of(build_scene(stage="formed"), "resonated") is None  # its resonated scene follows
    assert event_of(build_scene(stage="formed"), "formed")[1]["type"] == "scene"  # memory off


def test_pieces_and_the_final_answer():
    assert event_of(output(final=False, seq=2), "resonated") == (
        "acme",
        {"type": "delta", "message_id": "m-1", "seq": 2, "text": "Тишина"},
    )
    _, final = event_of(output(finish_reason="length", completion_tokens=8), "resonated")
    assert final["type"] == "final" and final["finish_reason"] == "length" and not final["cancelled"]
    _, cancelled = event_of(output(cancelled=True, finish_reason="cancelled"), "resonated")
    assert cancelled["cancelled"]


def test_a_dead_letter_belongs_to_the_tenant_of_the_record_it_holds():
    raw = encode(RawText(message_id="m-9", session_id="s-9", text="x", tenant="globex", ts_ms=1))
    tenant, event = event_of(dead_letter(raw), "resonated")
    assert tenant == "globex" and event == {
        "type": "error",
        "message_id": "m-9",
        "stage": "tokenizer",
        "topic": "raw-text",
        "reason": "too long",
        "error_type": "InputError",
    }
    # an original that cannot be read, or was cut, is shown to nobody
    assert event_of(dead_letter(b"\xff\x00 not a record"), "resonated") is None
    assert event_of(dead_letter(raw, truncated=True), "resonated") is None
    assert event_of(dead_letter(None), "resonated") is None


def test_each_subscriber_sees_only_its_tenant():
    async def run():
        feed = Feed("resonated")
        with feed.subscribe("acme") as acme, feed.subscribe("globex") as globex:
            feed.publish(build_scene(tenant="acme"))
            feed.publish(output(tenant="globex", message_id="m-2"))
            feed.publish(build_scene(stage="formed", tenant="acme"))
            assert (await acme.get(1))["type"] == "scene"
            assert (await globex.get(1))["message_id"] == "m-2"
            for subscription in (acme, globex):
                with pytest.raises(TimeoutError):
                    await subscription.get(0.05)
        assert feed.subscribers == set()  # left with the block

    asyncio.run(run())


def test_a_slow_subscriber_loses_events_and_is_told_how_many():
    async def run():
        feed = Feed("resonated", size=2)
        with feed.subscribe("acme") as acme:
            for seq in range(5):
                feed.publish(output(final=False, seq=seq))
            assert [(await acme.get(1))["seq"] for _ in range(2)] == [0, 1]
            assert await acme.get(1) == {"type": "gap", "lost": 3}
            feed.publish(output(final=False, seq=5))
            assert (await acme.get(1))["seq"] == 5

    asyncio.run(run())
