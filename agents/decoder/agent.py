"""The decoder in the stream: scenes → lora-outputs (agent ``decode_scene``).

Answers formed scenes, or resonated ones when the memory stage is on
(``SCENESTREAM_MEMORY``); never both, so no scene is answered twice and
feedback cannot loop. Scenes waiting together are generated as one batch of
mixed registers.
"""

from __future__ import annotations

from typing import Sequence

from scenestream.agents.decoder.engines import make_engine
from scenestream.agents.decoder.transform import Decoder
from scenestream.backbone import Result, StageSpec, batch_then_each
from scenestream.schemas.records import Scene
from scenestream.settings import Settings
from scenestream.topics import LORA_OUTPUTS, SCENES


class DecodeScene:
    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def process(self, records: Sequence[Scene]) -> list[Result]:
        return batch_then_each(lambda batch: [[(LORA_OUTPUTS, out)] for out in self.decoder.decode(batch)], records)


def build(settings: Settings) -> DecodeScene:
    return DecodeScene(Decoder(make_engine(settings)))


def _answers(settings: Settings):
    wanted = "resonated" if settings.memory else "formed"
    return lambda scene: scene.stage == wanted


def stage(settings: Settings) -> StageSpec:
    return StageSpec(name="decoder", agent="decode_scene", source=SCENES, sinks=(LORA_OUTPUTS,), build=build,
                     accepts=_answers(settings), in_thread=True)
