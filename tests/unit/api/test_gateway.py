"""The dispatcher: each record to the request waiting for its message id, in the order a client needs."""

from __future__ import annotations

import asyncio
import time

import pytest

from scenestream.api.gateway import Busy, Dispatcher, result_topics
from scenestream.schemas.records import DeadLetter, LoraOutput, RegisterWeight, Scene, SceneField
from scenestream.settings import Settings


def scene(stage="resonated", mid="m-1", tenant="default") -> Scene:
    return Scene(
        scene_id="sc-1",
        message_id=mid,
        session_id="s-1",
        tenant=tenant,
        stage=stage,
        text="t",
        lang="en",
        hypertokens=[],
        linkage="a",
        delta_code="Δ1",
        field=SceneField(valence=0, arousal=0, tension=0, rhythm="measured"),
        registers=[RegisterWeight(name="poet", weight=1.0)],
        register="poet",
        ts_ms=1,
    )


def out(text="x", final=False, seq=0, mid="m-1", cancelled=False, tenant="default") -> LoraOutput:
    return LoraOutput(
        message_id=mid,
        session_id="s-1",
        scene_id="sc-1",
        tenant=tenant,
        text=text,
        register="poet",
        adapter="poet",
        engine="e",
        model="m",
        delta_code="Δ1",
        final=final,
        seq=seq,
        cancelled=cancelled,
        finish_reason="cancelled" if cancelled else ("stop" if final else None),
    )


def drain(waiting) -> list[tuple[str, str]]:
    got = []
    while not waiting.queue.empty():
        kind, item = waiting.queue.get_nowait()
        got.append((kind, getattr(item, "stage", None) or getattr(item, "text", None) or ""))
    return got


def test_the_scene_comes_first_then_pieces_then_the_first_final_only():
    d = Dispatcher(max_pending=4, memory=True)
    waiting = d.open("m-1", "s-1", "default")
    d.note(out("He", seq=0))  # a piece read before the scene in the same batch waits for it
    d.note(scene("formed"))  # memory is on: the decoder answers the resonated scene
    d.note(scene("resonated"))
    d.note(out("llo", seq=1))
    d.note(out("He", seq=0))  # sent again (a decoder restarted): dropped
    d.note(out("Hello", final=True, seq=2))
    d.note(out("Hello again", final=True, seq=2))  # a second final: a duplicate, ignored
    d.note(out("late", seq=3))
    assert drain(waiting) == [("scene", "resonated"), ("delta", "He"), ("delta", "llo"), ("final", "Hello")]


def test_without_memory_the_formed_scene_is_the_one_and_a_final_brings_the_scene_it_has():
    d = Dispatcher(max_pending=4, memory=False)
    waiting = d.open("m-1", "s-1", "default")
    d.note(scene("formed"))
    assert drain(waiting) == [("scene", "formed")]
    d2 = Dispatcher(max_pending=4, memory=True)
    other = d2.open("m-1", "s-1", "default")
    d2.note(scene("formed"))
    d2.note(out("whole", final=True))  # the resonated scene was never read: the final comes with the formed one
    assert drain(other) == [("scene", "formed"), ("final", "whole")]


def test_dead_letters_cancellations_other_messages_and_other_tenants():
    d = Dispatcher(max_pending=4, memory=True)
    a = d.open("m-1", "s-1", "default")
    b = d.open("m-2", "s-1", "default")
    dead = DeadLetter(topic="raw-text", partition=0, offset=3, stage="tokenizer", reason="empty", error_type="X")
    assert d.note(dead.model_copy(update={"message_id": "m-1"}))
    assert not d.note(out(mid="m-9"))  # nobody waits for it
    assert not d.note(out(mid="m-2", tenant="acme"))  # never another tenant's record
    d.note(out("", final=True, mid="m-2", cancelled=True))
    assert [k for k, _ in drain(a)] == ["error"] and [k for k, _ in drain(b)] == ["cancelled"]


def test_too_many_pending_is_busy_and_closing_frees_a_place():
    d = Dispatcher(max_pending=2, memory=True)
    d.open("a", "s", "t")
    d.open("b", "s", "t")
    with pytest.raises(Busy, match="SCENESTREAM_API_MAX_PENDING=2"):
        d.open("c", "s", "t")
    d.close("a")
    d.open("c", "s", "t")


def test_waiting_times_out_at_the_deadline():
    d = Dispatcher(max_pending=2, memory=True)
    waiting = d.open("a", "s", "t")

    async def go():
        with pytest.raises(TimeoutError):
            await waiting.next(time.monotonic() + 0.05)
        waiting.note(scene(mid="a", tenant="t"))
        return await waiting.next(time.monotonic() + 1)

    kind, _ = asyncio.run(go())
    assert kind == "scene"


def test_the_gateway_reads_scenes_answers_and_every_dead_letter_topic():
    topics = result_topics(Settings(topic_prefix="p-"))
    assert {"p-scenes", "p-lora-outputs", "p-raw-text.dlq", "p-tokens.dlq", "p-scenes.dlq"} <= set(topics)
    assert "p-raw-text" not in topics and "p-control" not in topics
