"""Workers' heartbeats on the ``worker-status`` topic, and what a gateway concludes from them.

Every worker (``scenestream run``, the stack inside ``serve`` or ``ask``) sends a
:class:`~scenestream.schemas.records.WorkerStatus` every ``SCENESTREAM_STATUS_INTERVAL_S``: its stages, the
partitions of each stage's source topic its consumer holds, and its decoder engine; and a last one marked
``stopping`` when it stops. Kafka's own group description would say who holds what, but the embedded Tansu
describes a group's members without their assignments (measured: empty ``member_assignment``), so the workers
say it themselves, which works on every broker.

A gateway whose stages run elsewhere reads the topic (:class:`Heard`) and is ready (:func:`pipeline_ready`)
when every partition of every stage's source topic is held by a worker heard from within three intervals,
and a decoder engine is up."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any, Iterable, Mapping, Optional

from scenestream.schemas.records import WorkerStatus
from scenestream.settings import Settings

log = logging.getLogger(__name__)

WORKER = f"{socket.gethostname()}:{os.getpid()}"
STALE_AFTER = 3  # intervals without a heartbeat before a worker counts as gone


def status_of(app: Any, settings: Settings, runners: Iterable[Any], stopping: bool = False) -> WorkerStatus:
    """This worker's status now: its stages, the partitions of their sources it holds, its engine."""
    runners = list(runners)
    try:
        held = list(app.consumer.assignment())
    except Exception:  # not started yet, or stopping: nothing held
        held = []
    sources = {runner.spec.source.full_name(settings) for runner in runners}
    assigned = {topic: sorted(tp.partition for tp in held if tp.topic == topic) for topic in sorted(sources)}
    engine = None
    for runner in runners:
        decoder = getattr(runner.handler, "decoder", None)
        loop = getattr(runner.handler, "loop", None)
        if decoder is not None and getattr(loop, "failure", None) is None:
            engine = getattr(decoder.engine, "name", None)
    return WorkerStatus(
        worker=WORKER,
        stages=list(dict.fromkeys(runner.spec.name for runner in runners)),
        assigned=assigned if not stopping else {},
        engine=engine if not stopping else None,
        interval_s=settings.status_interval_s,
        stopping=stopping,
    )


def beat(app: Any, settings: Settings, runners: Iterable[Any]) -> None:
    """Send this worker's status every interval while ``app`` runs, and a last one as it stops, through one
    producer kept for the worker's life (a producer that failed is replaced at the next beat)."""
    from scenestream.backbone import start_producer
    from scenestream.client import send_with
    from scenestream.topics import WORKER_STATUS

    runners = list(runners)
    timeout = max(2.0, settings.status_interval_s)
    producer: Optional[Any] = None  # started at the first beat

    async def drop() -> None:
        nonlocal producer
        started, producer = producer, None
        if started is not None:
            try:
                await asyncio.wait_for(started.stop(), timeout=timeout)
            except Exception as exc:
                log.debug("the heartbeat's producer did not stop cleanly: %s", exc)

    async def send(stopping: bool = False) -> None:
        nonlocal producer
        try:
            if producer is None:
                producer = await asyncio.wait_for(start_producer(settings), timeout=timeout)
            record = status_of(app, settings, runners, stopping)
            await asyncio.wait_for(send_with(producer, settings, WORKER_STATUS, [record]), timeout=timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a heartbeat is a report: the stages go on without it
            log.warning("the worker's heartbeat was not sent: %s: %s", type(exc).__name__, exc)
            await drop()

    async def heartbeat() -> None:
        try:
            while True:
                await send()
                await asyncio.sleep(settings.status_interval_s)
        except asyncio.CancelledError:
            await asyncio.shield(send(stopping=True))
            raise
        finally:
            await asyncio.shield(drop())

    app.task(heartbeat)


class Heard:
    """The latest heartbeat of each worker, as a gateway's reader hands them in."""

    def __init__(self) -> None:
        self.workers: dict[str, WorkerStatus] = {}

    def note(self, status: WorkerStatus) -> None:
        known = self.workers.get(status.worker)
        if known is None or status.ts_ms >= known.ts_ms:
            self.workers[status.worker] = status

    def live(self, now_ms: Optional[int] = None) -> list[WorkerStatus]:
        """Workers heard from within ``STALE_AFTER`` of their intervals that have not said they stop."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        return [
            s for s in self.workers.values() if not s.stopping and now_ms - s.ts_ms <= STALE_AFTER * s.interval_s * 1000
        ]


def pipeline_ready(
    live: Iterable[WorkerStatus], routes: Mapping[str, tuple[str, str]], partitions: Mapping[str, Iterable[int]]
) -> tuple[bool, dict]:
    """Whether the live workers run the whole pipeline: for each agent (``routes``: agent → its stage and its
    source topic), every partition of its source held by a live worker of its stage (``partitions``: topic →
    its partitions); and a decoder engine up when the pipeline has a decoder. The checks, with what lacks."""
    live = list(live)
    stages: dict[str, bool] = {}
    missing: dict[str, list[int]] = {}
    for agent, (stage, topic) in routes.items():
        wanted = set(partitions.get(topic, ()))
        held: set[int] = set()
        for status in live:
            if stage in status.stages:
                held.update(status.assigned.get(topic, ()))
        lacking = sorted(wanted - held)
        stages[agent] = bool(wanted) and not lacking
        if not stages[agent]:
            missing[agent] = lacking
    checks: dict[str, Any] = {"workers": len(live), "stages": stages}
    if missing:
        checks["unheld_partitions"] = missing
    ok = all(stages.values())
    if any(stage == "decoder" for stage, _topic in routes.values()):
        engines = sorted({s.engine for s in live if s.engine and "decoder" in s.stages})
        checks["engine"] = bool(engines)
        checks["engines"] = engines
        ok = ok and bool(engines)
    return ok, checks


def pipeline_routes(settings: Settings) -> dict[str, tuple[str, str]]:
    """Agent → (stage, source topic) of every agent the pipeline runs under ``settings``."""
    from scenestream.topology import running_routes

    return {route.agent: (route.stage, route.source.full_name(settings)) for route in running_routes(settings.memory)}
