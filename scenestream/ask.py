"""``scenestream ask``: one text through the whole pipeline, correlated by message id.

When a ``scenestream run`` is up on this machine (its broker address is in
the data directory and answers), ``ask`` only publishes and waits. Otherwise
it starts the embedded broker and an in-process worker for the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator, Callable, Optional

from scenestream.broker import EmbeddedBroker, reachable
from scenestream.client import Watcher, cancel, check_size, publish, raw_text
from scenestream.runtime import running_worker, select_stages
from scenestream.schemas.records import LoraOutput
from scenestream.settings import Settings, get_settings
from scenestream.topics import MEMORY_EVENTS


@contextlib.asynccontextmanager
async def connected_stack(settings: Settings) -> AsyncIterator[tuple[Settings, str]]:
    """Settings of a reachable stack: configured cluster, running local stack, or one started now."""
    connected = reachable(settings)
    if connected is not None:
        yield connected, "cluster" if settings.broker else "running"
        return
    with EmbeddedBroker.from_settings(settings) as broker:
        s = settings.model_copy(update={"broker": broker.url})
        async with running_worker(s, select_stages(None, s)):
            yield s, "embedded"


async def ask_once(
    text: str,
    session: Optional[str] = None,
    timeout: float = 120.0,
    settings: Optional[Settings] = None,
    register: Optional[str] = None,
    on_piece: Optional[Callable[[LoraOutput], None]] = None,
    on_answer: Optional[Callable[[LoraOutput], None]] = None,
) -> dict:
    """Publish ``text`` and wait for its answer; ``on_piece`` gets the answer's streamed partials as they come,
    ``on_answer`` the final answer as soon as it is in, before an embedded stack shuts down (whose engine may
    print as it stops)."""
    settings = settings or get_settings()
    check_size(text, settings)  # before any stack starts
    specs = select_stages(None, settings)
    final = specs[-1].sinks[0]
    started = time.perf_counter()
    async with connected_stack(settings) as (s, mode):
        ready = time.perf_counter()
        record = raw_text(text, session, source="ask", register=register or None)
        watched = {decl.full_name(s): decl.schema for spec in specs for decl in spec.sinks}

        def mine(piece: LoraOutput) -> None:
            if on_piece is not None and piece.message_id == record.message_id:
                on_piece(piece)

        watcher = Watcher(s, watched, [spec.source.dlq_name(s) for spec in specs], on_partial=mine)
        await watcher.start()
        try:
            sent = time.perf_counter()
            sent_wall = time.time()
            await publish(s, [record])
            until = {final.full_name(s): None}
            if mode == "embedded" and s.memory:
                # this stack stops with the call: let memory link the answer to its scene first
                until[MEMORY_EVENTS.full_name(s)] = lambda event: event.event == "linked"
            try:
                found = await watcher.wait(record.message_id, until, timeout)
                if on_answer is not None and found.get("lora_output") is not None:
                    on_answer(found["lora_output"])
            except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C: the decoder stops generating it
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(cancel(s, record.message_id, record.tenant, "the asker went away"), 5)
                raise
        finally:
            await watcher.stop()
        done = time.perf_counter()
    result = {"message_id": record.message_id, "session_id": record.session_id, "stack": mode}
    result["scene"] = found.get("scene")
    if "lora_output" in found:
        result["output"] = found["lora_output"]
    result["timings"] = {
        "startup_ms": round((ready - started) * 1000, 1),
        "pipeline_ms": round((done - sent) * 1000, 1),
    }
    if record.message_id in watcher.first_partial:
        result["timings"]["first_piece_ms"] = round((watcher.first_partial[record.message_id] - sent_wall) * 1000, 1)
    output = found.get("lora_output")
    if output is not None:
        result["timings"].update(
            {k: output.timings_ms[k] for k in ("queue", "first_token", "generate") if k in output.timings_ms}
        )
    return result
