"""``scenestream ask``: one text through the whole pipeline, correlated by message id.

When a ``scenestream run`` is up on this machine (its broker address is in
the data directory and answers), ``ask`` only publishes and waits. Otherwise
it starts the embedded broker and an in-process worker for the call.
"""

from __future__ import annotations

import contextlib
import time
from typing import AsyncIterator, Callable, Optional

from scenestream.broker import EmbeddedBroker, reachable
from scenestream.client import Watcher, publish, raw_text
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
    with EmbeddedBroker() as broker:
        s = settings.model_copy(update={"broker": broker.url})
        async with running_worker(s, select_stages(None, s)):
            yield s, "embedded"


async def ask_once(text: str, session: Optional[str] = None, timeout: float = 120.0,
                   settings: Optional[Settings] = None, register: Optional[str] = None,
                   on_piece: Optional[Callable[[LoraOutput], None]] = None) -> dict:
    """Publish ``text`` and wait for its answer; ``on_piece`` gets the answer's streamed partials as they come."""
    settings = settings or get_settings()
    specs = select_stages(None, settings)
    final = specs[-1].sinks[0]
    started = time.perf_counter()
    async with connected_stack(settings) as (s, mode):
        ready = time.perf_counter()
        record = raw_text(text, session, source="ask")
        if register:
            record = record.model_copy(update={"force_register": register})
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
            found = await watcher.wait(record.message_id, until, timeout)
        finally:
            await watcher.stop()
        done = time.perf_counter()
    result = {"message_id": record.message_id, "session_id": record.session_id, "stack": mode}
    result["scene"] = found.get("scene")
    if "lora_output" in found:
        result["output"] = found["lora_output"]
    result["timings"] = {"startup_ms": round((ready - started) * 1000, 1),
                         "pipeline_ms": round((done - sent) * 1000, 1)}
    if record.message_id in watcher.first_partial:
        result["timings"]["first_piece_ms"] = round((watcher.first_partial[record.message_id] - sent_wall) * 1000, 1)
    output = found.get("lora_output")
    if output is not None:
        result["timings"].update({k: output.timings_ms[k] for k in ("queue", "first_token", "generate")
                                  if k in output.timings_ms})
    return result


def answer_head(output: LoraOutput) -> str:
    return f"{output.symbol or ''} {output.register} ({output.adapter} adapter, {output.engine}):"


def render(result: dict, answer: bool = True) -> str:
    """The human view of an ``ask`` result (``answer=False``: all but the answer's text, already streamed)."""
    lines = [f"message {result['message_id']}  session {result['session_id']}  ({result['stack']} stack, "
             f"{result['timings']['pipeline_ms']:.0f} ms through the pipeline)"]
    scene = result.get("scene")
    if scene is not None:
        registers = ", ".join(f"{r.name} {r.weight:.2f}" for r in scene.registers if r.weight >= 0.05)
        f = scene.field
        lines += [
            f"scene:       {scene.scene_id}  {scene.delta_code}  ({scene.lang})",
            f"linkage:     {scene.linkage}",
            "hypertokens: " + ", ".join(f"{h.text} ({h.weight:.2f})" for h in scene.hypertokens),
            f"field:       valence {f.valence:+.2f}  arousal {f.arousal:.2f}  tension {f.tension:.2f}  rhythm {f.rhythm}",
            f"registers:   {registers}  → {scene.register}",
        ]
        if scene.stage == "resonated":
            echoes = ", ".join(f"{e.get('scene_id', '?')[:8]} ({e.get('score', 0):.2f})" for e in scene.echoes)
            lines.append(f"resonance:   {scene.resonance:.2f}" + (f"  echoes: {echoes}" if echoes else "")
                         + (f"  symbol {scene.symbol}" if scene.symbol else ""))
    output = result.get("output")
    if output is not None:
        first = output.timings_ms.get("first_token")
        piece = result["timings"].get("first_piece_ms")
        stats = [f"{output.completion_tokens} tokens"] + ([f"first token {first:.0f} ms"] if first is not None else [])
        stats += [f"first piece here after {piece:.0f} ms"] if piece is not None else []
        if answer:
            lines += ["", answer_head(output), output.text]
        lines.append(f"answer:      {', '.join(stats)}")
    return "\n".join(lines)
