"""The continuous decoder killed with SIGKILL while 20 answers are in flight: restarted, it answers every
message, none is lost, and a message answered twice is seen as one accepted answer plus a duplicate."""

import asyncio
import os
import signal
import time

import pytest

from scenestream.agents.decoder.engines import vllm_available
from scenestream.client import produce, read_topic
from scenestream.offline import scenes_for
from scenestream.schemas import LoraOutput, decode
from scenestream.schemas.records import GenerationParams, RawText
from scenestream.serving import spawn_worker, worker_env
from scenestream.topics import LORA_OUTPUTS, SCENES, create_topics
from scenestream.training.provision import provision

N = 30
IN_FLIGHT = 20


def worker(settings, engine, log):
    env = worker_env(
        settings,
        SCENESTREAM_MEMORY="false",
        SCENESTREAM_ENGINE=engine,
        SCENESTREAM_DECODER_MODE="continuous",
        SCENESTREAM_DECODER_MAX_INFLIGHT=str(IN_FLIGHT),
        SCENESTREAM_ANSWER_MIN_TOKENS="0",  # each answer as long as its own max_new_tokens says
        SCENESTREAM_LOG_LEVEL="INFO",
    )
    # its own process group: SIGKILL takes the worker and its engine's process at once, like a lost machine
    return spawn_worker("decoder", env, log)


def finals(settings):
    """message id → its final lora-outputs, in topic order (per partition), read from the whole topic."""

    async def go():
        seen = {}
        async for record in read_topic(settings, LORA_OUTPUTS.full_name(settings)):
            out = decode(record.value, LoraOutput)
            if out.final:
                seen.setdefault(out.message_id, []).append(out)
        return seen

    return asyncio.run(go())


def tail(log):
    log.flush()
    return log.name + ":\n" + open(log.name, errors="replace").read()[-3000:]


def test_kill_9_with_answers_in_flight_loses_none_and_doubles_none_accepted(settings_factory, tmp_path):
    provision(settings_factory(), progress=False)
    engine = "vllm" if vllm_available() else "transformers"
    s = settings_factory(partitions=2, memory=False, scene_embedder="static")
    asyncio.run(create_topics(s))
    raws = [
        RawText(
            message_id=f"crash-{i}",
            session_id=f"crash-session-{i % 6}",
            text=f"Question {i}: why does the sea sound different at night?",
            # different lengths: answers finish out of order, so acks do too
            params=GenerationParams(max_new_tokens=16 + (i * 7) % 40),
        )
        for i in range(N)
    ]
    scenes = scenes_for(raws, s)
    first_log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - the worker writes to it until killed
    second_log = open(tmp_path / "second.log", "w")  # noqa: SIM115
    first = worker(s, engine, first_log)
    second = None
    try:
        asyncio.run(produce(s, SCENES, scenes))
        deadline = time.monotonic() + 400
        seen = []
        while time.monotonic() < deadline:  # kill once some answers are out and most are still in flight
            done = finals(s)
            seen.append(len(done))
            if 1 <= len(done) <= N - IN_FLIGHT // 2:
                break
            assert len(done) < N, f"every answer was out before a kill could come (answered, by poll: {seen})"
            assert first.poll() is None, tail(first_log)
            time.sleep(0.5)
        else:
            pytest.fail(f"no answer within the deadline (answered, by poll: {seen[-5:]})")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        before = len(finals(s))
        assert before < N, "every answer was out before the kill: nothing was in flight"
        second = worker(s, engine, second_log)
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            done = finals(s)
            if len(done) == N:
                break
            assert second.poll() is None, tail(second_log)
            time.sleep(1)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert set(done) == {r.message_id for r in raws}, f"lost: {sorted({r.message_id for r in raws} - set(done))}"
    for message_id, outs in done.items():
        accepted = outs[0]  # every reader keeps the first final record of a message
        assert accepted.is_answer and accepted.text.strip(), message_id
        assert all(o.message_id == message_id and not o.cancelled for o in outs)
    duplicates = sum(len(outs) - 1 for outs in done.values())
    print(f"engine {engine}: {before} of {N} answered before the kill, {duplicates} answered twice")
