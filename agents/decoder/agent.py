"""The decoder in the stream: scenes → lora-outputs (agent ``decode_scene``).

Answers formed scenes, or resonated ones when the memory stage is on
(``SCENESTREAM_MEMORY``); never both, so no scene is answered twice and
feedback cannot loop. Scenes waiting together are generated as one batch of
mixed registers. With ``SCENESTREAM_STREAM`` on (the default) the answer
streams: partial lora-outputs while tokens come, then the final one. The
engine is a shared resource of the worker: the runtime owns and closes it.
"""

from __future__ import annotations

from typing import Optional, Sequence

from scenestream.agents.decoder.engines import make_engine
from scenestream.agents.decoder.transform import Decoder
from scenestream.backbone import Resources, Result, StageSpec, Streamed, batch_then_each
from scenestream.schemas.records import Scene
from scenestream.settings import Settings
from scenestream.topics import LORA_OUTPUTS


class DecodeScene:
    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def process(self, records: Sequence[Scene], emit: Optional[Streamed] = None) -> list[Result]:
        partial = (lambda out: emit(LORA_OUTPUTS, out)) if emit is not None else None
        return batch_then_each(
            lambda batch: [[(LORA_OUTPUTS, out)] for out in self.decoder.decode(batch, partial)], records
        )

    def close(self) -> None:
        """Nothing of its own: the engine is the runtime's to close."""


def build(settings: Settings, resources: Resources) -> DecodeScene:
    engine = resources.shared("engine", lambda: make_engine(settings))
    return DecodeScene(Decoder(engine, stream_interval_ms=settings.stream_interval_ms))


def stages(settings: Settings) -> list[StageSpec]:
    wanted = "resonated" if settings.memory else "formed"
    return [
        StageSpec.of(
            "decode_scene",
            build,
            accepts=lambda scene: scene.stage == wanted,
            answers=lambda output: output.final,
            in_thread=True,
            streams=settings.stream,
            time_bounded=False,
        )
    ]
