"""Memory through the real broker: resonance in a session, never across, trace, replay, restart."""

import asyncio

import pytest

from scenestream.audit import history, replay, trace
from scenestream.client import Watcher, publish, raw_text
from scenestream.runtime import running_worker, select_stages
from scenestream.schemas import LoraOutput, MemoryEvent, Scene
from scenestream.settings import Settings
from scenestream.topics import LORA_OUTPUTS, MEMORY_EVENTS, RAW_TEXT, SCENES, TOKENS
from scenestream.training.provision import provision


@pytest.fixture(scope="module")
def base_model():
    return provision(Settings(), progress=False)


def linked(event: MemoryEvent) -> bool:
    return event.event == "linked"


async def ask_all(s, items):
    """Publish (text, session) one after the other; the answer of each before the next is sent."""
    watched = {
        SCENES.full_name(s): Scene,
        LORA_OUTPUTS.full_name(s): LoraOutput,
        MEMORY_EVENTS.full_name(s): MemoryEvent,
    }
    watcher = Watcher(s, watched, [d.dlq_name(s) for d in (RAW_TEXT, TOKENS, SCENES, LORA_OUTPUTS)])
    await watcher.start()
    results = []
    try:
        for text, session in items:
            record = raw_text(text, session_id=session)
            await publish(s, [record])
            # the answer, and the memory stage linking it to its scene
            got = await watcher.wait(
                record.message_id, {LORA_OUTPUTS.full_name(s): None, MEMORY_EVENTS.full_name(s): linked}, timeout=240
            )
            results.append(got)
    finally:
        await watcher.stop()
    return results


def test_resonance_in_a_session_never_across_then_trace_replay_and_restart(settings_factory, base_model):
    s = settings_factory(engine="transformers", max_new_tokens=16)
    items = [
        ("Почему я не чувствую шаг в себе?", "A"),
        ("Почему я не чувствую шаг в себе?", "B"),
        ("Я не чувствую своих шагов внутри, почему?", "A"),
    ]

    async def run_stack():
        async with running_worker(s, select_stages(None, s)):
            return await ask_all(s, items)

    first, other_session, second = asyncio.run(run_stack())
    assert first["scene"].stage == "resonated" and first["scene"].resonance == 0.0
    assert other_session["scene"].resonance == 0.0 and other_session["scene"].echoes == []  # B never sees A
    scene = second["scene"]
    assert scene.resonance > 0 and scene.echoes[0]["scene_id"] == first["scene"].scene_id
    assert second["lora_output"].scene_id == scene.scene_id

    # audit: the archive and the topics both know the second message
    got = trace(second["lora_output"].message_id, s, s)
    assert got["archive"]["scene_id"] == scene.scene_id and got["archive"]["answer"] == second["lora_output"].text
    assert SCENES.full_name(s) in got["topics"] and MEMORY_EVENTS.full_name(s) in got["topics"]
    answers = [e["record"] for e in got["topics"][LORA_OUTPUTS.full_name(s)]]
    assert [a.final for a in answers] == [False] * (len(answers) - 1) + [True]  # streamed, then the whole answer
    links = [e["record"] for e in got["topics"][MEMORY_EVENTS.full_name(s)] if e["record"].event == "linked"]
    assert len(links) == 1  # memory links the final answer only
    assert {"tokenize", "embed", "first_token"} <= set(got["timings_ms"]) | {
        k.split(".", 1)[-1] for k in got["timings_ms"]
    }

    # the archive survives a restart of the stack (it is on disk under the data directory)
    rows = history("A", s)
    assert [r["message_id"] for r in rows] == [first["scene"].message_id, scene.message_id]
    replayed = replay("A", s, register="poet", engine="transformers")
    assert [r["message_id"] for r in replayed] == [r["message_id"] for r in rows]
    assert all(r["new"].register == "poet" and r["new"].replay_of == r["message_id"] for r in replayed)
    assert [r["message_id"] for r in history("A", s)] == [r["message_id"] for r in rows]  # originals untouched
    # the versions each scene was answered with (kept in the archive), replayed beside today's
    side_by_side = replay("A", s, engine="transformers", versions="both")
    for row in side_by_side:
        recorded = row["old"]["adapter_version"]
        assert recorded and recorded.startswith(row["old"]["register"] + "@")
        assert row["answered"].adapter_version == recorded == row["new"].adapter_version  # unchanged since
        assert row["answered"].text.strip() and row["answered"].replay_of == row["message_id"]

    async def restart():
        async with running_worker(s, select_stages(None, s)):
            return await ask_all(s, [("Почему я опять не чувствую шаг в себе?", "A")])

    (after,) = asyncio.run(restart())
    assert after["scene"].resonance > 0 and len(after["scene"].echoes) >= 2
