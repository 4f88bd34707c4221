"""The memory stage in the stream.

* ``remember_scene`` (memory): formed scenes → resonated scenes (back into
  ``scenes``) + memory-events (stored, recalled);
* ``link_answer`` (memory): lora-outputs → memory-events (linked), the answer
  written into its scene's archive entry.

Both agents of a worker share one :class:`Memory` (one archive: Qdrant Edge on
disk, or a Qdrant server with ``SCENESTREAM_QDRANT_URL``), which the runtime
owns and closes when the worker stops. With ``SCENESTREAM_MEMORY=false`` the
stage has no agents and the decoder answers formed scenes.
"""

from __future__ import annotations

from typing import Sequence

from scenestream.agents.memory.archive import open_archive
from scenestream.agents.memory.transform import Memory
from scenestream.backbone import Resources, Result, StageSpec, batch_then_each, map_each
from scenestream.schemas.records import LoraOutput, Scene
from scenestream.settings import Settings
from scenestream.topics import MEMORY_EVENTS, SCENES


def open_memory(settings: Settings) -> Memory:
    from scenestream.agents.scene.embedder import make_embedder

    return Memory(
        open_archive(settings.data_dir, settings.qdrant_url),
        make_embedder(settings.scene_embedder),
        scope=settings.memory_scope,
    )


def shared_memory(settings: Settings, resources: Resources) -> Memory:
    return resources.shared("memory", lambda: open_memory(settings))


class RememberScene:
    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def process(self, records: Sequence[Scene]) -> list[Result]:
        def remember(batch: Sequence[Scene]):
            return [
                [(SCENES, scene)] + [(MEMORY_EVENTS, e) for e in events]
                for scene, events in self.memory.remember(batch)
            ]

        return batch_then_each(remember, records)

    def close(self) -> None:
        """Nothing of its own: the shared memory is the runtime's to close."""


class LinkAnswer:
    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def process(self, records: Sequence[LoraOutput]) -> list[Result]:
        return map_each(lambda out: [(MEMORY_EVENTS, e) for e in self.memory.link([out])], records)

    def close(self) -> None:
        """Nothing of its own: the shared memory is the runtime's to close."""


def stages(settings: Settings) -> list[StageSpec]:
    if not settings.memory:
        return []
    return [
        StageSpec.of(
            "remember_scene",
            lambda s, r: RememberScene(shared_memory(s, r)),
            accepts=lambda scene: scene.stage == "formed",
            answers=lambda scene: scene.stage == "resonated",
            in_thread=True,
        ),
        StageSpec.of(
            "link_answer",
            lambda s, r: LinkAnswer(shared_memory(s, r)),
            accepts=lambda out: out.is_answer,  # not the partials, not a cancelled generation
            answers=lambda event: event.event == "linked",
            in_thread=True,
        ),
    ]
