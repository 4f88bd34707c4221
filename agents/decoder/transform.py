"""scenes → lora-outputs, as a pure function of a batch and an engine.

    from scenestream.agents.decoder.transform import Decoder
    Decoder(engine).decode(scenes)                   # one final LoraOutput per scene, in order
    Decoder(engine).decode(scenes, partial=send)     # and, while tokens come, partial ones to ``send``

Partials carry the newly settled piece of the answer (see
:func:`~scenestream.agents.decoder.prompt.settled_answer`): joined, they are
always a prefix of the final text. A request's first piece goes out at once;
later ones at most every ``stream_interval_ms``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from scenestream.agents.decoder.engines import Engine, Request, served_adapter
from scenestream.agents.decoder.prompt import build_prompt, clean_answer, settled_answer
from scenestream.schemas.records import SYMBOLS, LoraOutput, Scene, now_ms

Partial = Callable[[LoraOutput], None]


def register_for(scene: Scene) -> str:
    return scene.force_register or scene.register


class _Stream:
    """Per request: the raw text so far and what of it went out as partials (thread-safe)."""

    def __init__(self, decoder: Decoder, scenes: Sequence[Scene], send: Partial) -> None:
        self.decoder = decoder
        self.scenes = scenes
        self.send = send
        self.raw = [""] * len(scenes)
        self.sent = [""] * len(scenes)
        self.count = [0] * len(scenes)
        self.last = [0.0] * len(scenes)
        self.lock = threading.Lock()

    def __call__(self, i: int, text: str) -> None:
        with self.lock:
            self.raw[i] += text
            now = time.perf_counter()
            if self.count[i] and (now - self.last[i]) * 1000 < self.decoder.stream_interval_ms:
                return
            settled = settled_answer(self.raw[i])
            if len(settled) <= len(self.sent[i]):
                return
            piece = settled[len(self.sent[i]) :]
            self.sent[i], self.last[i] = settled, now
            seq = self.count[i]
            self.count[i] += 1
        self.send(self.decoder.output(self.scenes[i], piece, final=False, seq=seq))


@dataclass
class Decoder:
    engine: Engine
    stream_interval_ms: float = 50.0

    def requests(self, scenes: Sequence[Scene]) -> list[Request]:
        out = []
        for scene in scenes:
            register = register_for(scene)
            echoes = [e for e in scene.echoes if isinstance(e, dict) and e.get("text")]
            out.append(Request(prompt=build_prompt(scene, register, echoes), adapter=register))
        return out

    def output(self, scene: Scene, text: str, final: bool, seq: int, **fields) -> LoraOutput:
        register = register_for(scene)
        return LoraOutput(
            message_id=scene.message_id,
            session_id=scene.session_id,
            scene_id=scene.scene_id,
            tenant=scene.tenant,
            text=text,
            register=register,
            adapter=fields.pop("adapter", None) or served_adapter(self.engine.adapters, register),
            engine=self.engine.name,
            model=self.engine.model,
            delta_code=scene.delta_code,
            symbol=scene.symbol or SYMBOLS.get(register),
            replay_of=scene.replay_of,
            final=final,
            seq=seq,
            **fields,
        )

    def decode(self, scenes: Sequence[Scene], partial: Optional[Partial] = None) -> list[LoraOutput]:
        if not scenes:
            return []
        started_ms = now_ms()
        started = time.perf_counter()
        stream = _Stream(self, scenes, partial) if partial is not None else None
        generations = self.engine.generate(self.requests(scenes), on_delta=stream)
        outputs = []
        for i, (scene, gen) in enumerate(zip(scenes, generations)):
            outputs.append(
                self.output(
                    scene,
                    clean_answer(gen.text),
                    final=True,
                    seq=stream.count[i] if stream else 0,
                    adapter=gen.adapter,
                    prompt_tokens=gen.prompt_tokens,
                    completion_tokens=gen.completion_tokens,
                    timings_ms={
                        **scene.timings_ms,
                        "queue": float(max(0, started_ms - scene.ts_ms)),
                        **({"first_token": gen.first_token_ms} if gen.first_token_ms is not None else {}),
                        "generate": gen.total_ms,
                        "decode": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            )
        return outputs
