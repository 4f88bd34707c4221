"""The pipeline's topology table: declared topics only, one loop (memory's resonance), and every stage's
specs exactly as the table says."""

from __future__ import annotations

import pytest

from scenestream.runtime import select_stages, stage_specs
from scenestream.settings import Settings
from scenestream.topics import PIPELINE
from scenestream.topology import STAGE_NAMES, TOPOLOGY


def topic_cycles(routes) -> list[list[str]]:
    """Cycles of the topic graph (source → sink per route), each as the list of topics on it."""
    edges: dict[str, set[str]] = {}
    for route in routes:
        for sink in route.sinks:
            edges.setdefault(route.source.name, set()).add(sink.name)
    found = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(edges.get(path[-1], ())):
            if nxt == path[0]:
                found.append(list(path))
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its smallest topic
                walk(path + [nxt])

    for start in sorted(edges):
        walk([start])
    return found


def test_every_route_reads_and_writes_declared_topics():
    declared = set(PIPELINE)
    for route in TOPOLOGY:
        assert route.source in declared, route
        assert route.sinks and set(route.sinks) <= declared, route


def test_the_only_loop_is_the_memory_stage_writing_resonated_scenes_back():
    assert topic_cycles(TOPOLOGY) == [["scenes"]]
    (loop,) = [r for r in TOPOLOGY if r.source in r.sinks]
    assert loop.stage == "memory" and loop.agent == "remember_scene"


def test_the_cycle_finder_sees_a_longer_loop():
    from scenestream.topics import LORA_OUTPUTS, SCENES, TOKENS
    from scenestream.topology import Route

    routes = [
        Route("a", "a", TOKENS, (SCENES,)),
        Route("b", "b", SCENES, (LORA_OUTPUTS,)),
        Route("c", "c", LORA_OUTPUTS, (TOKENS,)),
    ]
    assert topic_cycles(routes) == [["lora-outputs", "tokens", "scenes"]]


def test_agent_names_are_unique_and_stage_names_in_pipeline_order():
    assert len({r.agent for r in TOPOLOGY}) == len(TOPOLOGY)
    assert STAGE_NAMES == ("tokenizer", "scene", "memory", "decoder")


@pytest.mark.parametrize("memory", [True, False])
def test_every_stage_module_exports_stages_as_the_table_says(memory):
    settings = Settings(memory=memory)
    by_agent = {r.agent: r for r in TOPOLOGY}
    seen = []
    for name in STAGE_NAMES:
        for spec in stage_specs(name, settings):  # imports agents/<name>/agent.py, builds nothing
            route = by_agent[spec.agent]
            assert (spec.name, spec.source, spec.sinks) == (route.stage, route.source, route.sinks)
            seen.append(spec.agent)
    expected = [r.agent for r in TOPOLOGY if memory or r.stage != "memory"]
    assert seen == expected


def test_selecting_a_stage_that_is_switched_off_says_so():
    with pytest.raises(ValueError, match="switched off"):
        select_stages(["memory"], Settings(memory=False))
    with pytest.raises(ValueError, match="unknown stage"):
        select_stages(["nope"], Settings())
