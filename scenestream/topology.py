"""The pipeline's topology: every stage's agents, what each reads and what it writes, on one screen.

    stage      agent                     reads          writes
    tokenizer  tokenize_raw_text         raw-text     → tokens
    scene      build_scene_from_tokens   tokens       → scenes (formed)
    memory     remember_scene            scenes       → scenes (resonated), memory-events   ← the one loop
    memory     link_answer               lora-outputs → memory-events
    decoder    decode_scene              scenes       → lora-outputs

Each ``agents/<stage>/agent.py`` exports ``stages(settings, resources) ->
list[StageSpec]``; a spec takes its topics from its :class:`Route` here, so
this table is the one place that says how records flow. The only loop is the
memory stage writing resonated scenes back into ``scenes`` (it reads only
formed ones, so nothing goes round twice); ``tests/unit/test_topology.py``
checks that. A new stage: a route here, a folder ``agents/<stage>/`` with
``transform.py`` and ``agent.py``, and its name in :data:`STAGE_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from scenestream.topics import LORA_OUTPUTS, MEMORY_EVENTS, RAW_TEXT, SCENES, TOKENS, TopicDecl


@dataclass(frozen=True)
class Route:
    stage: str  # the name `scenestream run --stages` takes; workers of a stage share its partitions
    agent: str  # stable: the faust agent and consumer name, a verb after what it consumes
    source: TopicDecl
    sinks: tuple[TopicDecl, ...]


TOPOLOGY: tuple[Route, ...] = (
    Route("tokenizer", "tokenize_raw_text", RAW_TEXT, (TOKENS,)),
    Route("scene", "build_scene_from_tokens", TOKENS, (SCENES,)),
    Route("memory", "remember_scene", SCENES, (SCENES, MEMORY_EVENTS)),
    Route("memory", "link_answer", LORA_OUTPUTS, (MEMORY_EVENTS,)),
    Route("decoder", "decode_scene", SCENES, (LORA_OUTPUTS,)),
)
ROUTES = {route.agent: route for route in TOPOLOGY}


def running_routes(memory: bool) -> tuple[Route, ...]:
    """The routes the pipeline runs: all, or all but the memory stage's with ``SCENESTREAM_MEMORY=false``."""
    return tuple(route for route in TOPOLOGY if memory or route.stage != "memory")


STAGE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(route.stage for route in TOPOLOGY))  # pipeline order
