"""Assemble and run workers: which stages, on which broker, in which process.

scenestream run                      # every stage in one worker (embedded broker by default)
scenestream run --stages tokenizer   # a subset; two such workers share the partitions
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import threading
import time
from typing import Any, AsyncIterator, Iterable

from scenestream.app import App, configure_logging, create_app
from scenestream.backbone import Resources, StageRunner, StageSpec, attach
from scenestream.settings import Settings
from scenestream.topology import STAGE_NAMES, running_routes

log = logging.getLogger(__name__)


def stage_specs(name: str, settings: Settings) -> list[StageSpec]:
    """The specs of one stage, from ``agents/<name>/agent.py``'s ``stages(settings)`` (imported lazily:
    a tokenizer worker never imports the decoder's engines)."""
    module = importlib.import_module(f"scenestream.agents.{name}.agent")
    return module.stages(settings)


def select_stages(names: Iterable[str] | None, settings: Settings | None = None) -> list[StageSpec]:
    """The specs of the named stages (every stage of :data:`~scenestream.topology.STAGE_NAMES` when none)."""
    from scenestream.settings import get_settings

    settings = settings or get_settings()
    if not names:
        return [spec for name in STAGE_NAMES for spec in stage_specs(name, settings)]
    chosen = []
    for name in names:
        name = name.strip()
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
        specs = stage_specs(name, settings)
        if not specs:
            raise ValueError(f"the {name} stage is switched off by its settings (SCENESTREAM_{name.upper()}=false)")
        chosen += specs
    return chosen


def build_app(settings: Settings, stages: Iterable[StageSpec]) -> tuple[App, list[StageRunner], Resources]:
    """The worker's faust app with an agent per stage; the stages share one :class:`Resources`."""
    if settings.producer_idempotence == "auto" and not settings.idempotent_producer:
        log.warning(
            "producers are not idempotent (SCENESTREAM_PRODUCER_IDEMPOTENCE=auto, broker on a loopback "
            "address: the embedded Tansu lacks InitProducerId); a retried send may be written twice"
        )
    stages = list(stages)
    app = create_app(settings, group_id(settings, stages))
    resources = Resources()
    try:
        runners = [attach(app, spec, settings, resources) for spec in stages]
    except BaseException:
        resources.close()
        raise
    from scenestream.heartbeat import beat
    from scenestream.registry import watch

    watch(app, settings, [runner.handler for runner in runners])  # registers published while it runs
    beat(app, settings, runners)  # its heartbeat on worker-status: a gateway's /readyz
    return app, runners, resources


def group_id(settings: Settings, stages: Iterable[StageSpec]) -> str:
    """The consumer group of a worker running ``stages``: ``SCENESTREAM_APP_ID`` for the whole pipeline, else
    ``<app id>-<stage>+<stage>…`` (pipeline order). Workers of the same stages share their partitions; workers
    of other stages never take them: in one group, a decoder-only worker and a memory-only worker would split
    ``scenes`` between them (Kafka gives each partition to one member), and half the scenes would go
    unanswered (measured: 2 of 4 partitions each)."""
    names = {spec.name for spec in stages}
    if names >= {route.stage for route in running_routes(settings.memory)}:
        return settings.app_id
    return f"{settings.app_id}-{'+'.join(n for n in STAGE_NAMES if n in names)}"


def close_worker(runners: Iterable[StageRunner], resources: Resources) -> None:
    """Each handler's own resources first, then the shared ones (archive, engine)."""
    try:
        for runner in runners:
            runner.close()
    finally:
        resources.close()


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
async def running_worker(
    settings: Settings, stages: Iterable[StageSpec]
) -> AsyncIterator[tuple[App, list[StageRunner]]]:
    """A worker inside the current event loop (``ask``, benchmarks, tests)."""
    from scenestream.topics import create_topics

    await create_topics(settings)
    app, runners, resources = build_app(settings, stages)
    try:
        await app.start()
        try:
            await wait_assigned(app)
            yield app, runners
        finally:
            await app.stop()
    finally:
        close_worker(runners, resources)


def bounded_shutdown(seconds: float) -> threading.Timer:
    """A timer that ends the process ``seconds`` after a stop was asked for, if it has not ended by then.

    A worker whose broker is gone would otherwise spend a minute in the consumer's and producer's
    shutdown (each waits for its request timeout). Exiting is safe: nothing is committed before its
    results were delivered, so the next worker picks up whatever this one had not finished."""

    def give_up() -> None:
        log.error(
            "the worker did not stop within %.0f s of being asked to (broker unreachable?): exiting now; "
            "unfinished messages were not committed and will be handled again",
            seconds,
        )
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer


def run_worker(settings: Settings, stages: list[StageSpec]) -> None:
    """Run a faust worker until Ctrl-C / SIGTERM (blocking); it exits within
    ``SCENESTREAM_SHUTDOWN_TIMEOUT_S`` of the signal, stopping hard if a clean stop hangs."""
    import faust

    from scenestream.topics import create_topics

    class Worker(faust.Worker):
        def _schedule_shutdown(self, signal: Any) -> None:
            bounded_shutdown(settings.shutdown_timeout_s)
            super()._schedule_shutdown(signal)

    configure_logging(settings)
    asyncio.run(create_topics(settings))
    app, runners, resources = build_app(settings, stages)
    try:
        worker = Worker(app, loglevel=settings.log_level, override_logging=False, quiet=True)
        worker.execute_from_commandline()
    finally:
        close_worker(runners, resources)
