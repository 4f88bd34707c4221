"""Assemble and run workers: which stages, on which broker, in which process.

    scenestream run                      # every stage in one worker (embedded broker by default)
    scenestream run --stages tokenizer   # a subset; two such workers share the partitions
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import AsyncIterator, Iterable

from scenestream.app import App, create_app
from scenestream.backbone import StageRunner, StageSpec, attach
from scenestream.settings import Settings

log = logging.getLogger(__name__)


def stage_specs(settings: Settings | None = None) -> dict[str, StageSpec]:
    """Every stage scenestream has, in pipeline order (imported lazily)."""
    from scenestream.agents.decoder.agent import stage as decoder
    from scenestream.agents.scene.agent import STAGE as scene
    from scenestream.agents.tokenizer.agent import STAGE as tokenizer
    from scenestream.settings import get_settings

    return {spec.name: spec for spec in (tokenizer, scene, decoder(settings or get_settings()))}


def select_stages(names: Iterable[str] | None, settings: Settings | None = None) -> list[StageSpec]:
    specs = stage_specs(settings)
    if not names:
        return list(specs.values())
    chosen = []
    for name in names:
        name = name.strip()
        if name not in specs:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(specs)}")
        chosen.append(specs[name])
    return chosen


def build_app(settings: Settings, stages: Iterable[StageSpec]) -> tuple[App, list[StageRunner]]:
    app = create_app(settings)
    runners = [attach(app, spec, settings) for spec in stages]
    return app, runners


async def wait_assigned(app: App, timeout: float = 30.0) -> None:
    """Until the worker's consumer owns partitions of its source topics (the group has settled)."""
    deadline = time.monotonic() + timeout
    wanted = {topic for agent in app.agents.values() for topic in agent.get_topic_names()}
    while time.monotonic() < deadline:
        try:
            assigned = {tp.topic for tp in app.consumer.assignment()}
        except Exception:
            assigned = set()
        if wanted and wanted <= assigned:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"worker got no partitions of {sorted(wanted)} within {timeout:.0f}s")


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, stages: Iterable[StageSpec]) -> AsyncIterator[tuple[App, list[StageRunner]]]:
    """A worker inside the current event loop (``ask``, benchmarks, tests)."""
    from scenestream.topics import create_topics

    await create_topics(settings)
    app, runners = build_app(settings, stages)
    await app.start()
    try:
        await wait_assigned(app)
        yield app, runners
    finally:
        await app.stop()


def run_worker(settings: Settings, stages: list[StageSpec]) -> None:
    """Run a faust worker until Ctrl-C / SIGTERM (blocking)."""
    import faust

    from scenestream.topics import create_topics

    asyncio.run(create_topics(settings))
    app, _runners = build_app(settings, stages)
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, quiet=True)
    worker.execute_from_commandline()
