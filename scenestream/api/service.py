"""The stack behind ``scenestream serve``: the embedded broker and every stage in this process, or a gateway
only; the gateway; the scene archive the audit routes read.

* No ``SCENESTREAM_BROKER`` and no stack running on this machine: the embedded broker and one worker with
  every stage start in this process (as ``scenestream ask`` does), and the broker's address is published in
  the data directory, so ``scenestream ingest``, ``tail`` and ``ask`` in another terminal find it.
* ``SCENESTREAM_BROKER`` set (or a ``scenestream run`` up on this machine): a gateway only; the stages run
  in ``scenestream run`` workers anywhere, and several ``serve`` processes can share one cluster.

The stack starts in the background: ``/healthz`` answers at once, ``/readyz`` and every route that needs
the pipeline answer 503 until it is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Callable, Iterator, Optional

from scenestream.api.gateway import Gateway
from scenestream.api.openai_types import APIError
from scenestream.settings import Settings

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: Settings, on_record: Optional[Callable[[Any], None]] = None) -> None:
        self.base = settings
        self.on_record = on_record
        self.settings: Settings = settings  # with the broker's address once connected
        self.mode: Optional[str] = None  # embedded (broker and stages here), cluster or running (gateway only)
        self.gateway: Optional[Gateway] = None
        self.worker: Any = None  # the faust app of the in-process stages
        self.runners: list = []
        self.broker: Any = None
        self.error: Optional[str] = None
        self.up = asyncio.Event()  # set when ready or failed
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._archive: Any = None
        self._archive_lock = asyncio.Lock()

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scenestream-serve-stack")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    async def _run(self) -> None:
        from scenestream.broker import reachable

        try:
            connected = reachable(self.base)
            if connected is not None:
                self.mode = "cluster" if self.base.broker else "running"
                await self._serve(connected)
            else:
                await self._embedded()
        except Exception as exc:  # readiness reports it; the process stays up to say why
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("the pipeline behind the API did not start")
        finally:
            self.up.set()

    async def _embedded(self) -> None:
        from scenestream.broker import EmbeddedBroker, publish_address, withdraw_address
        from scenestream.runtime import running_worker, select_stages

        self.mode = "embedded"
        with EmbeddedBroker.from_settings(self.base) as broker:
            self.broker = broker
            s = self.base.model_copy(update={"broker": broker.url})
            async with running_worker(s, select_stages(None, s)) as (app, runners):
                self.worker, self.runners = app, runners
                publish_address(s, broker.url, role="stack")
                try:
                    await self._serve(s)
                finally:
                    withdraw_address(s)

    async def _serve(self, settings: Settings) -> None:
        self.settings = settings
        gateway = Gateway(settings, self.on_record)
        try:
            await gateway.start()
            self.gateway = gateway
            self.up.set()
            await self._stop.wait()
        finally:
            self.gateway = None
            await gateway.stop()
            self._close_archive()

    # ------------------------------------------------------------------------------------------- readiness

    def readiness(self, workers: bool = True) -> tuple[bool, dict]:
        """Whether requests can be served now, and what was checked. A gateway-only process checks the remote
        workers' heartbeats only with ``workers``: ``/readyz`` does; a request does not wait for them (its
        text waits in Kafka for a worker, as the stream's other messages do)."""
        checks: dict[str, Any] = {"mode": self.mode}
        if self.error:
            checks["error"] = self.error
            return False, checks
        checks["gateway"] = bool(self.gateway is not None and self.gateway.alive)
        if self.gateway is not None and self.gateway.failure is not None:
            checks["error"] = f"the gateway's reader stopped: {self.gateway.failure}"
        if self.mode == "embedded":
            checks["broker"] = bool(self.broker is not None and self.broker.alive())
            checks["stages"] = self.stage_assignment()
            checks["engine"] = self.engine_name() is not None
            ok = checks["gateway"] and checks["broker"] and all(checks["stages"].values()) and checks["engine"]
        elif workers and self.gateway is not None:  # the stages run in workers elsewhere: their heartbeats say
            ok, pipeline = self.pipeline_readiness()
            checks.update(pipeline)
            ok = ok and checks["gateway"]
        else:
            ok = checks["gateway"]
        if self.gateway is None and not self.error:
            checks["starting"] = True
        return bool(ok), checks

    def pipeline_readiness(self) -> tuple[bool, dict]:
        """A gateway-only process: whether the workers heard from lately (their heartbeats on worker-status) hold
        every partition of every stage's source topic, and a decoder engine is up among them."""
        from scenestream.heartbeat import pipeline_ready, pipeline_routes

        gateway = self.gateway
        routes = pipeline_routes(self.settings)
        return pipeline_ready(gateway.heard.live(), routes, gateway.partitions)

    async def probe(self) -> tuple[bool, dict]:
        """:meth:`readiness`, with the broker asked for its metadata now (within 2 s) in a gateway-only process
        (whose stages run elsewhere: their partitions are their workers' to report, in their heartbeats)."""
        broker: Optional[Exception] = None
        if self.mode != "embedded" and self.gateway is not None:
            try:
                await asyncio.wait_for(self.gateway.refresh_partitions(), 2.0)
            except Exception as exc:
                broker = exc
        ok, checks = self.readiness()
        if self.mode != "embedded" and self.gateway is not None:
            checks["broker"] = broker is None
            if broker is not None:
                checks["error"] = f"the broker did not answer: {type(broker).__name__}: {broker}"
                ok = False
        return ok, checks

    def stage_assignment(self) -> dict[str, bool]:
        """Per stage of this process: whether its consumer holds partitions of its source topic."""
        if self.worker is None:
            return {}
        try:
            assigned = {tp.topic for tp in self.worker.consumer.assignment()}
        except Exception:
            assigned = set()
        return {runner.spec.agent: runner.spec.source.full_name(self.settings) in assigned for runner in self.runners}

    def require_ready(self) -> Gateway:
        ok, checks = self.readiness(workers=False)
        if not ok or self.gateway is None:
            reason = checks.get("error") or ("starting" if checks.get("starting") else "not ready")
            raise APIError(503, f"the pipeline is not ready ({reason})", code="not_ready", headers={"Retry-After": "2"})
        return self.gateway

    # ------------------------------------------------------------------------------------------- the model

    def _decoder(self) -> Any:
        for runner in self.runners:
            decoder = getattr(runner.handler, "decoder", None)
            if decoder is not None:
                return decoder
        return None

    def engine_name(self) -> Optional[str]:
        decoder = self._decoder()
        return getattr(getattr(decoder, "engine", None), "name", None)

    def base_model_name(self) -> str:
        decoder = self._decoder()
        model = getattr(getattr(decoder, "engine", None), "model", None)
        if model:
            return str(model)
        if self.settings.base_model:
            return self.settings.base_model
        from scenestream.agents.decoder.base_model import default_model_dir

        return default_model_dir(self.settings).name

    def adapters(self) -> list[str]:
        """The registers that have their own adapter (the engine's when it runs here, else the folder's)."""
        from scenestream.schemas.registers import catalogue

        decoder = self._decoder()
        served = getattr(getattr(decoder, "engine", None), "adapters", None)
        if served is None:
            from scenestream.agents.decoder.engines import adapters_in

            served = adapters_in(self.settings)
        return [r for r in catalogue().names if r in served]

    def registers(self) -> list[dict]:
        """Every register of the catalogue: its symbol, descriptions, its adapter's version, and whether the
        decoder of this process serves it now (``loaded``; None where the decoders run elsewhere) and which
        version (``served_version``)."""
        from scenestream.schemas.registers import CatalogueError, catalogue

        engine = getattr(self._decoder(), "engine", None)
        served = getattr(engine, "adapters", None) if engine is not None else None
        versions = getattr(engine, "versions", {}) if engine is not None else {}
        out = []
        for decl in catalogue():
            try:
                version = decl.adapter_version(self.settings.adapters_dir)
            except CatalogueError:
                version = None
            out.append(
                {
                    "register": decl.name,
                    "symbol": decl.symbol,
                    "description": decl.description,
                    "adapter_version": version,
                    "loaded": None if served is None else decl.name in served,
                    "served_version": versions.get(decl.name),
                }
            )
        return out

    # ------------------------------------------------------------------------------------------- the archive

    def _memory_archive(self) -> Any:
        for runner in self.runners:
            memory = getattr(runner.handler, "memory", None)
            if memory is not None:
                return memory.archive
        return None

    @contextlib.contextmanager
    def archive(self) -> Iterator[Any]:
        """The scene archive: the memory stage's when it runs here, else one opened for this process (a Qdrant
        server, or the embedded archive when no other process holds it: 503 saying so when one does)."""
        shared = self._memory_archive()
        if shared is not None:
            yield shared
            return
        from scenestream.agents.memory.archive import open_archive

        if self._archive is not None:
            yield self._archive
            return
        try:
            opened = open_archive(self.settings.data_dir, self.settings.qdrant_url)
        except ValueError as exc:  # ArchiveBusy: a running stack holds the embedded archive
            raise APIError(503, str(exc), code="archive_busy") from None
        if self.settings.qdrant_url:  # a server's collection: kept open
            self._archive = opened
            yield opened
            return
        try:  # the embedded archive is single-process: held only while it is read, so a worker can take it
            yield opened
        finally:
            opened.close()

    def _close_archive(self) -> None:
        if self._archive is not None:
            with contextlib.suppress(Exception):
                self._archive.close()
            self._archive = None
