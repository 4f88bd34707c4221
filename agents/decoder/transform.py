"""scenes → lora-outputs, as a pure function of a batch and an engine.

    from scenestream.agents.decoder.transform import Decoder
    Decoder(engine).decode(scenes)                   # one final LoraOutput per scene, in order
    Decoder(engine).decode(scenes, partial=send)     # and, while tokens come, partial ones to ``send``
    loop.submit(Decoder(engine).job(scene, id, send, done))   # one scene into a running engine (loop.py)

Partials carry the newly settled piece of the answer (see
:func:`~scenestream.agents.decoder.prompt.settled_answer`): joined, they are
always a prefix of the final text. A request's first piece goes out at once;
later ones at most every ``stream_interval_ms``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

from scenestream.agents.decoder.engines import Engine, Generation, Request, resolve_params, served_adapter
from scenestream.agents.decoder.loop import Job
from scenestream.agents.decoder.prompt import build_prompt, clean_answer, settled_answer
from scenestream.schemas.records import SYMBOLS, GenerationParams, LoraOutput, Scene, now_ms
from scenestream.settings import Settings, get_settings

Partial = Callable[[LoraOutput], None]


def register_for(scene: Scene) -> str:
    return scene.force_register or scene.register


class _Pieces:
    """One answer's raw text so far and what of it went out as partials."""

    def __init__(self, decoder: Decoder, scene: Scene, send: Partial) -> None:
        self.decoder = decoder
        self.scene = scene
        self.send = send
        self.raw = ""
        self.sent = ""
        self.count = 0
        self.last = 0.0
        self.first_sent: Optional[float] = None  # wall-clock seconds the first piece was handed on

    def add(self, text: str) -> None:
        self.raw += text
        now = time.perf_counter()
        if self.count and (now - self.last) * 1000 < self.decoder.stream_interval_ms:
            return
        settled = settled_answer(self.raw)
        if len(settled) <= len(self.sent):
            return
        piece = settled[len(self.sent) :]
        self.sent, self.last = settled, now
        seq = self.count
        self.count += 1
        if self.first_sent is None:
            self.first_sent = time.time()
        self.send(self.decoder.output(self.scene, piece, final=False, seq=seq))


class _Stream:
    """Per request of a batch: its :class:`_Pieces` (thread-safe: an engine may stream rows from threads)."""

    def __init__(self, decoder: Decoder, scenes: Sequence[Scene], send: Partial) -> None:
        self.pieces = [_Pieces(decoder, scene, send) for scene in scenes]
        self.lock = threading.Lock()

    def __call__(self, i: int, text: str) -> None:
        with self.lock:
            self.pieces[i].add(text)

    def count(self, i: int) -> int:
        return self.pieces[i].count


Done = Callable[[Union[LoraOutput, BaseException]], None]


@dataclass
class Decoder:
    engine: Engine
    stream_interval_ms: float = 50.0
    settings: Optional[Settings] = None  # the generation defaults; None: the process's settings

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = get_settings()

    def params(self, scene: Scene) -> GenerationParams:
        """What ``scene``'s answer is generated with: its message's own parameters, the settings' where unset."""
        return resolve_params(scene.params, self.settings)

    def request(self, scene: Scene) -> Request:
        register = register_for(scene)
        echoes = [e for e in scene.echoes if isinstance(e, dict) and e.get("text")]
        return Request(prompt=build_prompt(scene, register, echoes), adapter=register, params=self.params(scene))

    def requests(self, scenes: Sequence[Scene]) -> list[Request]:
        return [self.request(scene) for scene in scenes]

    def output(self, scene: Scene, text: str, final: bool, seq: int, **fields) -> LoraOutput:
        register = register_for(scene)
        return LoraOutput(
            message_id=scene.message_id,
            session_id=scene.session_id,
            scene_id=scene.scene_id,
            tenant=scene.tenant,
            text=text,
            register=register,
            adapter=fields.pop("adapter", None) or served_adapter(self.engine.adapters, register),
            engine=self.engine.name,
            model=self.engine.model,
            delta_code=scene.delta_code,
            symbol=scene.symbol or SYMBOLS.get(register),
            replay_of=scene.replay_of,
            final=final,
            seq=seq,
            **fields,
        )

    def final(self, scene: Scene, gen: Generation, seq: int, timings: dict[str, float]) -> LoraOutput:
        """The whole answer of ``scene`` (a cancelled one is marked so, never an answer)."""
        cancelled = gen.finish_reason == "cancelled"
        return self.output(
            scene,
            clean_answer(gen.text),
            final=True,
            seq=seq,
            adapter=gen.adapter,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            finish_reason=gen.finish_reason,
            cancelled=cancelled,
            params=self.params(scene),
            timings_ms={**scene.timings_ms, **timings},
        )

    def cancelled(self, scene: Scene) -> LoraOutput:
        """The final record of a message cancelled before its answer began."""
        gen = Generation("", served_adapter(self.engine.adapters, register_for(scene)), 0, 0, None, 0.0, "cancelled")
        return self.final(scene, gen, seq=0, timings={})

    def job(self, scene: Scene, job_id: str, send: Optional[Partial], done: Done) -> Job:
        """``scene``'s answer as a job for a running engine (:mod:`~scenestream.agents.decoder.loop`): partials
        go to ``send`` while it is generated, and the final record (or the error) to ``done``. Timings, in ms:
        ``queue`` (arrival at the decoder → admitted into the engine), ``first_token`` and ``generate`` (from
        admission), ``first_piece`` (arrival → the first partial handed on), ``decode`` (arrival → done)."""
        pieces = _Pieces(self, scene, send) if send is not None else None
        arrived = time.time()

        def on_delta(text: str) -> bool:
            if pieces is not None:
                pieces.add(text)
            return False

        def on_done(outcome: Union[Generation, BaseException]) -> None:
            if isinstance(outcome, BaseException):
                done(outcome)
                return
            timings = {
                "queue": round(((job.admitted or job.ended) - job.submitted) * 1000, 2),
                "generate": outcome.total_ms,
                "decode": round((job.ended - job.submitted) * 1000, 2),
            }
            if outcome.first_token_ms is not None:
                timings["first_token"] = outcome.first_token_ms
            if pieces is not None and pieces.first_sent is not None:
                timings["first_piece"] = round((pieces.first_sent - arrived) * 1000, 2)
            done(self.final(scene, outcome, seq=pieces.count if pieces is not None else 0, timings=timings))

        job = Job(job_id, self.request(scene), on_delta=on_delta, on_done=on_done)
        return job

    def decode(self, scenes: Sequence[Scene], partial: Optional[Partial] = None) -> list[LoraOutput]:
        """The batch decoder (``SCENESTREAM_DECODER_MODE=batch``): every scene in one engine call."""
        if not scenes:
            return []
        started_ms = now_ms()
        started = time.perf_counter()
        stream = _Stream(self, scenes, partial) if partial is not None else None
        generations = self.engine.generate(self.requests(scenes), on_delta=stream)
        outputs = []
        for i, (scene, gen) in enumerate(zip(scenes, generations)):
            timings = {
                "queue": float(max(0, started_ms - scene.ts_ms)),
                "generate": gen.total_ms,
                "decode": round((time.perf_counter() - started) * 1000, 2),
            }
            if gen.first_token_ms is not None:
                timings["first_token"] = gen.first_token_ms
            outputs.append(self.final(scene, gen, seq=stream.count(i) if stream else 0, timings=timings))
        return outputs
