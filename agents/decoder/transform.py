"""scenes → lora-outputs, as a pure function of a batch and an engine.

    from scenestream.agents.decoder.transform import Decoder
    Decoder(engine).decode(scenes)     # one LoraOutput per scene, in order
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from scenestream.agents.decoder.engines import Engine, Request
from scenestream.agents.decoder.prompt import SYMBOLS, build_prompt, clean_answer
from scenestream.schemas.records import LoraOutput, Scene, now_ms


def register_for(scene: Scene) -> str:
    return scene.force_register or scene.register


@dataclass
class Decoder:
    engine: Engine

    def requests(self, scenes: Sequence[Scene]) -> list[Request]:
        out = []
        for scene in scenes:
            register = register_for(scene)
            echoes = [e for e in scene.echoes if isinstance(e, dict) and e.get("text")]
            out.append(Request(prompt=build_prompt(scene, register, echoes), adapter=register))
        return out

    def decode(self, scenes: Sequence[Scene]) -> list[LoraOutput]:
        if not scenes:
            return []
        started_ms = now_ms()
        started = time.perf_counter()
        generations = self.engine.generate(self.requests(scenes))
        outputs = []
        for scene, gen in zip(scenes, generations):
            register = register_for(scene)
            outputs.append(LoraOutput(
                message_id=scene.message_id,
                session_id=scene.session_id,
                scene_id=scene.scene_id,
                tenant=scene.tenant,
                text=clean_answer(gen.text),
                register=register,
                adapter=gen.adapter,
                engine=self.engine.name,
                model=self.engine.model,
                delta_code=scene.delta_code,
                symbol=scene.symbol or SYMBOLS.get(register),
                prompt_tokens=gen.prompt_tokens,
                completion_tokens=gen.completion_tokens,
                timings_ms={**scene.timings_ms,
                            "queue": float(max(0, started_ms - scene.ts_ms)),
                            **({"first_token": gen.first_token_ms} if gen.first_token_ms is not None else {}),
                            "generate": gen.total_ms,
                            "decode": round((time.perf_counter() - started) * 1000, 2)},
                replay_of=scene.replay_of,
            ))
        return outputs
