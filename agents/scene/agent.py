"""The scene builder in the stream: tokens → scenes (agent ``build_scene_from_tokens``).

Runs off the event loop (embedding is CPU work), one engine call per batch:
the backbone hands over everything already waiting, up to SCENESTREAM_BATCH_MAX.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from scenestream.agents.scene.transform import SceneBuilder
from scenestream.backbone import Resources, Result, StageSpec, batch_then_each
from scenestream.schemas.records import Tokens
from scenestream.settings import Settings
from scenestream.topics import SCENES

log = logging.getLogger(__name__)


class BuildSceneFromTokens:
    def __init__(self, builder: SceneBuilder, settings: Settings) -> None:
        self.builder = builder
        self.settings = settings

    def process(self, records: Sequence[Tokens]) -> list[Result]:
        return batch_then_each(lambda batch: [[(SCENES, scene)] for scene in self.builder.build(batch)], records)

    def registers_changed(self, registers: Any) -> None:
        """A register was published or removed while running: a router head refitted for it (``scenestream
        register add``) is loaded; a removed register is never routed to (the catalogue says so at once)."""
        from scenestream.agents.scene.transform import model_folder

        if self.builder.reload(model_folder(self.settings)):
            model = self.builder.model
            log.info("scene builder: router head %s (%s)", model.version, ", ".join(model.registers))

    def close(self) -> None:
        """Nothing to release: the embedder and the shipped arrays are plain memory."""


def build(settings: Settings, resources: Resources) -> BuildSceneFromTokens:
    builder = SceneBuilder.from_settings(settings)
    builder.warm_up()  # load the engine and arrays at start-up, not on the first message
    return BuildSceneFromTokens(builder, settings)


def stages(settings: Settings) -> list[StageSpec]:
    return [
        StageSpec.of("build_scene_from_tokens", build, in_thread=True, answers=lambda scene: scene.stage == "formed")
    ]
