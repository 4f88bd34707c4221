"""The memory stage in the stream.

* ``remember_scene`` (memory): formed scenes → resonated scenes (back into
  ``scenes``) + memory-events (stored, recalled);
* ``link_answer`` (memory): lora-outputs → memory-events (linked), the answer
  written into its scene's archive entry.

Both share one archive per process (Qdrant Edge on disk, or a Qdrant server
with ``SCENESTREAM_QDRANT_URL``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

from scenestream.agents.memory.archive import open_archive
from scenestream.agents.memory.transform import Memory
from scenestream.backbone import Result, StageSpec, batch_then_each, map_each
from scenestream.schemas.records import LoraOutput, Scene
from scenestream.settings import Settings
from scenestream.topics import LORA_OUTPUTS, MEMORY_EVENTS, SCENES


@lru_cache(maxsize=None)
def _memory(data_dir: Path, qdrant_url: Optional[str], embedder: str, scope: str) -> Memory:
    from scenestream.agents.scene.embedder import make_embedder

    memory = Memory(open_archive(data_dir, qdrant_url), make_embedder(embedder), scope=scope)
    _open.append(memory)
    return memory


def shared_memory(settings: Settings) -> Memory:
    return _memory(settings.data_dir, settings.qdrant_url, settings.scene_embedder, settings.memory_scope)


def release_memory() -> None:
    """Close every archive this process opened (a worker stops; the next one reopens)."""
    for memory in list(_open):
        memory.archive.close()
    _open.clear()
    _memory.cache_clear()


_open: list[Memory] = []


class _MemoryHandler:
    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def close(self) -> None:
        release_memory()


class RememberScene(_MemoryHandler):
    def process(self, records: Sequence[Scene]) -> list[Result]:
        def remember(batch: Sequence[Scene]):
            return [[(SCENES, scene)] + [(MEMORY_EVENTS, e) for e in events]
                    for scene, events in self.memory.remember(batch)]

        return batch_then_each(remember, records)


class LinkAnswer(_MemoryHandler):
    def process(self, records: Sequence[LoraOutput]) -> list[Result]:
        return map_each(lambda out: [(MEMORY_EVENTS, e) for e in self.memory.link([out])], records)


REMEMBER = StageSpec(name="memory", agent="remember_scene", source=SCENES, sinks=(SCENES, MEMORY_EVENTS),
                     build=lambda s: RememberScene(shared_memory(s)), accepts=lambda scene: scene.stage == "formed",
                     in_thread=True)
LINK = StageSpec(name="memory-links", agent="link_answer", source=LORA_OUTPUTS, sinks=(MEMORY_EVENTS,),
                 build=lambda s: LinkAnswer(shared_memory(s)), accepts=lambda out: out.final, in_thread=True)
