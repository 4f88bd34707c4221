"""The scene builder in the stream: tokens → scenes (agent ``build_scene_from_tokens``).

Runs off the event loop (embedding is CPU work), one engine call per batch:
the backbone hands over everything already waiting, up to SCENESTREAM_BATCH_MAX.
"""

from __future__ import annotations

from typing import Sequence

from scenestream.agents.scene.transform import SceneBuilder
from scenestream.backbone import Result, StageSpec
from scenestream.schemas.records import Tokens
from scenestream.settings import Settings
from scenestream.topics import SCENES, TOKENS


class BuildSceneFromTokens:
    def __init__(self, builder: SceneBuilder) -> None:
        self.builder = builder

    def process(self, records: Sequence[Tokens]) -> list[Result]:
        try:
            return [[(SCENES, scene)] for scene in self.builder.build(records)]
        except Exception:
            if len(records) == 1:
                raise
        # one record broke the batch: build one by one so only that one is dead-lettered
        results: list[Result] = []
        for record in records:
            try:
                results.append([(SCENES, self.builder.build([record])[0])])
            except Exception as exc:
                results.append(exc)
        return results


def build(settings: Settings) -> BuildSceneFromTokens:
    builder = SceneBuilder(embedder_name=settings.scene_embedder)
    builder.warm_up()  # load the engine and arrays at start-up, not on the first message
    return BuildSceneFromTokens(builder)


STAGE = StageSpec(name="scene", agent="build_scene_from_tokens", source=TOKENS, sinks=(SCENES,), build=build,
                  in_thread=True)
