"""The client's Watcher without a broker: records of one message, whatever order and batching they come in."""

import asyncio
from types import SimpleNamespace

import pytest

from scenestream.client import DeadLettered, Watcher
from scenestream.schemas import LoraOutput, MemoryEvent, encode
from scenestream.schemas.records import DeadLetter
from scenestream.settings import Settings

LORA, MEMORY, DLQ = "lora-outputs", "memory-events", "scenes-dlq"


class Batches:
    """A consumer whose ``getmany`` hands out prepared batches, then nothing."""

    def __init__(self, *batches):
        self.batches = list(batches)

    async def getmany(self, timeout_ms):
        if self.batches:
            return {"tp": [SimpleNamespace(topic=topic, value=encode(item)) for topic, item in self.batches.pop(0)]}
        await asyncio.sleep(timeout_ms / 1000)
        return {}


def answer(mid, **extra):
    return LoraOutput(
        message_id=mid,
        session_id="s",
        scene_id="sc",
        text=extra.pop("text", "ответ"),
        register="poet",
        adapter="poet",
        engine="transformers",
        model="m",
        delta_code="Δ",
        **extra,
    )


def event(mid, kind):
    return MemoryEvent(message_id=mid, session_id="s", scene_id="sc", event=kind)


def watcher(*batches, **kwargs):
    w = Watcher(Settings(), {LORA: LoraOutput, MEMORY: MemoryEvent}, [DLQ], **kwargs)
    w.consumer = Batches(*batches)
    return w


def linked(item):
    return item.event == "linked"


def test_link_and_answer_in_one_batch_are_both_found():
    # the memory link arrives in the same poll as the answer (the case a lost link used to time out on)
    w = watcher(
        [
            (MEMORY, event("m1", "recalled")),
            (MEMORY, event("m1", "stored")),
            (MEMORY, event("m1", "linked")),
            (LORA, answer("m1")),
        ]
    )
    got = asyncio.run(w.wait("m1", {LORA: None, MEMORY: linked}, timeout=2))
    assert got["lora_output"].text == "ответ" and got["memory_event"].event == "linked"
    assert "m1" not in w.seen  # handed out once


def test_accepted_record_is_returned_even_when_a_later_one_follows():
    w = watcher([(MEMORY, event("m1", "stored")), (MEMORY, event("m1", "linked")), (LORA, answer("m1"))])
    got = asyncio.run(w.wait("m1", MEMORY, timeout=2, accept=lambda e: e.event == "stored"))
    assert got["memory_event"].event == "stored" and got["lora_output"].message_id == "m1"


def test_waits_until_every_topic_has_its_record():
    w = watcher([(LORA, answer("m1"))], [(MEMORY, event("m1", "stored"))], [(MEMORY, event("m1", "linked"))])
    got = asyncio.run(w.wait("m1", {LORA: None, MEMORY: linked}, timeout=2))
    assert got["memory_event"].event == "linked" and w.consumer.batches == []


def test_timeout_names_the_missing_topic():
    w = watcher([(LORA, answer("m1"))])
    with pytest.raises(TimeoutError, match=f"no result on {MEMORY} for message m1"):
        asyncio.run(w.wait("m1", {LORA: None, MEMORY: linked}, timeout=0.3))


def test_partials_go_to_on_partial_not_to_results():
    pieces = []
    w = watcher(
        [(LORA, answer("m1", text="от", final=False)), (LORA, answer("m2")), (LORA, answer("m1", text="ответ", seq=1))],
        on_partial=pieces.append,
    )
    got = asyncio.run(w.wait("m1", LORA, timeout=2))
    assert [p.text for p in pieces] == ["от"] and got["lora_output"].final and "m1" in w.first_partial
    assert asyncio.run(w.wait("m2", LORA, timeout=2))["lora_output"].message_id == "m2"  # others kept


def test_dead_letter_raises_with_its_reason():
    dead = DeadLetter(
        topic="scenes",
        partition=0,
        offset=3,
        stage="decoder",
        error_type="SchemaError",
        reason="bad scene",
        message_id="m1",
    )
    w = watcher([(DLQ, dead)])
    with pytest.raises(DeadLettered, match="decoder refused the message \\(SchemaError\\): bad scene"):
        asyncio.run(w.wait("m1", LORA, timeout=2))
