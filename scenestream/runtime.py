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


def stage_groups(settings: Settings | None = None) -> dict[str, list[StageSpec]]:
    """Every stage scenestream has, in pipeline order, by the name ``--stages`` takes (imported lazily)."""
    from scenestream.agents.decoder.agent import stage as decoder
    from scenestream.agents.scene.agent import STAGE as scene
    from scenestream.agents.tokenizer.agent import STAGE as tokenizer
    from scenestream.settings import get_settings

    settings = settings or get_settings()
    groups = {"tokenizer": [tokenizer], "scene": [scene]}
    if settings.memory:
        from scenestream.agents.memory.agent import LINK, REMEMBER

        groups["memory"] = [REMEMBER, LINK]
    groups["decoder"] = [decoder(settings)]
    return groups


def select_stages(names: Iterable[str] | None, settings: Settings | None = None) -> list[StageSpec]:
    groups = stage_groups(settings)
    if not names:
        return [spec for specs in groups.values() for spec in specs]
    chosen = []
    for name in names:
        name = name.strip()
        if name not in groups:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(groups)}")
        chosen += groups[name]
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
        for runner in runners:
            runner.close()


def run_worker(settings: Settings, stages: list[StageSpec]) -> None:
    """Run a faust worker until Ctrl-C / SIGTERM (blocking)."""
    import faust

    from scenestream.topics import create_topics

    asyncio.run(create_topics(settings))
    app, runners = build_app(settings, stages)
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        for runner in runners:
            runner.close()
