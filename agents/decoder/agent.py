"""The decoder in the stream: scenes → lora-outputs (agent ``decode_scene``).

Answers formed scenes, or resonated ones when the memory stage is on
(``SCENESTREAM_MEMORY``); never both, so no scene is answered twice and
feedback cannot loop. ``SCENESTREAM_DECODER_MODE=continuous`` (the default)
keeps the engine running and admits each scene at its next step, each answer
sent and acknowledged when it is done, at most ``SCENESTREAM_DECODER_MAX_INFLIGHT``
at once, cancellable through the control topic; ``batch`` generates the scenes
waiting together as one batch of mixed registers. With ``SCENESTREAM_STREAM`` on (the default) the answer
streams: partial lora-outputs while tokens come, then the final one. The
engine is a shared resource of the worker: the runtime owns and closes it.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Optional, Sequence

from scenestream.agents.decoder.engines import make_engine
from scenestream.agents.decoder.loop import engine_loop
from scenestream.agents.decoder.transform import Decoder
from scenestream.backbone import Resources, Result, StageSpec, Streamed, batch_then_each
from scenestream.schemas.records import Record, Scene
from scenestream.settings import Settings
from scenestream.topics import CONTROL, LORA_OUTPUTS


class DecodeScene:
    """The decoder behind the backbone: ``process`` (batch mode) or ``submit``/``cancel`` (continuous mode,
    the engine kept running by :func:`~scenestream.agents.decoder.loop.engine_loop`)."""

    def __init__(self, decoder: Decoder, loop: Optional[Any] = None) -> None:
        self.decoder = decoder
        self.loop = loop
        self.jobs: dict[str, str] = {}  # message id → its job in the engine
        self.ids = itertools.count()

    def process(self, records: Sequence[Scene], emit: Optional[Streamed] = None) -> list[Result]:
        partial = (lambda out: emit(LORA_OUTPUTS, out)) if emit is not None else None
        return batch_then_each(
            lambda batch: [[(LORA_OUTPUTS, out)] for out in self.decoder.decode(batch, partial)], records
        )

    def submit(self, scene: Scene, send: Optional[Callable[[Record], None]], done: Callable[[Result], None]) -> None:
        job_id = f"{scene.message_id}#{next(self.ids)}"  # a message answered again is a new request
        self.jobs[scene.message_id] = job_id

        def finished(outcome: Any) -> None:
            self.jobs.pop(scene.message_id, None)
            done(outcome if isinstance(outcome, BaseException) else [(LORA_OUTPUTS, outcome)])

        self.loop.submit(self.decoder.job(scene, job_id, send, finished))

    def cancel(self, message_id: str) -> None:
        job_id = self.jobs.get(message_id)
        if job_id is not None:
            self.loop.abort(job_id)

    def cancelled_result(self, scene: Scene) -> Result:
        return [(LORA_OUTPUTS, self.decoder.cancelled(scene))]

    def registers_changed(self, registers: Any) -> None:
        """A register was published or removed while running: the engine serves exactly the catalogue's
        adapters from its next step (or batch) on; answers in flight finish on the weights they began with."""
        from scenestream.agents.decoder.engines import adapters_in

        sync = getattr(self.decoder.engine, "sync_adapters", None)
        if sync is None:
            raise RuntimeError(f"the {self.decoder.engine.name} engine cannot change its adapters while running")
        sync(adapters_in(self.decoder.settings))

    def loaded(self) -> dict[str, str]:
        """The adapters the engine serves now: register → adapter version ("" where the engine cannot tell)."""
        engine = self.decoder.engine
        versions = getattr(engine, "versions", None) or {}
        return {name: versions.get(name, "") for name in engine.adapters}

    def close(self) -> None:
        """Nothing of its own: the engine and its loop are the runtime's to close."""


def build(settings: Settings, resources: Resources) -> DecodeScene:
    engine = resources.shared("engine", lambda: make_engine(settings))
    decoder = Decoder(engine, stream_interval_ms=settings.stream_interval_ms, settings=settings)
    if settings.decoder_mode == "batch":
        return DecodeScene(decoder)
    loop = resources.shared("engine-loop", lambda: engine_loop(engine, settings.decoder_max_inflight))
    return DecodeScene(decoder, loop)


def stages(settings: Settings) -> list[StageSpec]:
    wanted = "resonated" if settings.memory else "formed"
    continuous = settings.decoder_mode == "continuous"
    return [
        StageSpec.of(
            "decode_scene",
            build,
            accepts=lambda scene: scene.stage == wanted,
            answers=lambda output: output.final,
            in_thread=True,
            streams=settings.stream,
            time_bounded=False,
            continuous=settings.decoder_max_inflight if continuous else None,
            control=CONTROL if continuous else None,
        )
    ]
