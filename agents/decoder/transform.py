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

from scenestream.agents.decoder.answers import close_sentence, finished, open_tail, trim_to_clause, trim_to_sentence
from scenestream.agents.decoder.engines import Engine, Generation, Request, resolve_params, served_adapter
from scenestream.agents.decoder.loop import Job
from scenestream.agents.decoder.prompt import build_prompt, clean_answer, settled_answer
from scenestream.schemas.records import GenerationParams, LoraOutput, Scene, now_ms
from scenestream.schemas.registers import catalogue
from scenestream.settings import Settings, get_settings

Partial = Callable[[LoraOutput], None]


def register_for(scene: Scene) -> str:
    return scene.force_register or scene.register


HOLD_TOKENS = 16  # this close to its token limit nothing unfinished streams, not even the first sentence


class _Answer:
    """One answer as it is generated: its raw text, what of it went out as partials, and when it may stop.

    It stops at the first sentence end once it has ``answer_min_tokens`` (counted as the engine's pieces,
    about one token each). What streams: the first sentence piece by piece, as it comes (the first token goes
    out at once), until a clause in it ends (";"), then whole clauses; after it, only whole sentences, each when
    it ends; and within :data:`HOLD_TOKENS` of the token limit nothing unfinished either. So an answer the limit
    cuts inside a sentence can be trimmed back to its last whole sentence, or a first sentence to its last whole
    clause, closed (:meth:`final_text`), and still start with every piece sent; only a first clause longer than
    the limit stays unfinished. ``streamed`` without ``send``: track what would have
    been sent, every piece at once (``Decoder.answer``, so ``bench quality`` measures what a streaming user
    gets)."""

    def __init__(
        self, decoder: Decoder, scene: Optional[Scene], send: Optional[Partial], limit: int, streamed: bool = False
    ) -> None:
        self.decoder = decoder
        self.scene = scene
        self.send = send
        self.streamed = streamed or send is not None
        self.limit = limit
        self.raw = ""
        self.tokens = 0
        self.sent = ""
        self.count = 0
        self.last = 0.0
        self.first_sent: Optional[float] = None  # wall-clock seconds the first piece was handed on

    def add(self, text: str) -> bool:
        """Take new raw text; True when the answer is long enough and ends a sentence."""
        self.raw += text
        self.tokens += 1
        settled = settled_answer(self.raw)
        least = self.decoder.settings.answer_min_tokens
        enough = bool(least) and self.tokens >= least and finished(settled)
        if least and not enough and self.tokens >= self.limit - HOLD_TOKENS:
            enough = settled.endswith(";")  # near the limit a clause end will do: final_text closes it
        if self.streamed:
            self._stream(settled, force=enough)
        return enough

    def _stream(self, settled: str, force: bool) -> None:
        now = time.perf_counter()
        paced = self.send is not None and not force and self.count
        if paced and (now - self.last) * 1000 < self.decoder.stream_interval_ms:
            return
        if not finished(settled):
            # after the first sentence, whole sentences; within the first, whole clauses once one has ended
            whole = trim_to_sentence(settled) or trim_to_clause(settled)
            if whole or self.tokens >= self.limit - HOLD_TOKENS:
                settled = whole
        settled = open_tail(settled)  # a trailing "," or ";" may yet become the full stop final_text adds
        if len(settled) <= len(self.sent) or not settled.startswith(self.sent):
            return
        piece = settled[len(self.sent) :]
        self.sent, self.last = settled, now
        seq = self.count
        self.count += 1
        if self.send is None:
            return
        if self.first_sent is None:
            self.first_sent = time.time()
        self.send(self.decoder.output(self.scene, piece, final=False, seq=seq))

    def final_text(self, raw: str, finish_reason: Optional[str]) -> str:
        """The answer's text: cut at the model's next block; stopped at a sentence end, without whatever began
        after it (the start of the model's next block, held back from the stream too); at the token limit,
        trimmed to its last complete sentence, or where the first sentence is still open to its last clause end
        closed with a full stop (never shorter than what was streamed: then it stays unfinished);
        ended by the model itself, or at a clause end near the limit, without a sentence end: closed with a full
        stop (:func:`close_sentence`; the stream never sent the trailing "," or ";" it replaces)."""
        text = settled_answer(raw) if finish_reason == "sentence" else clean_answer(raw)
        if finished(text):
            return text
        if finish_reason == "length":
            trimmed = trim_to_sentence(text)
            if trimmed and len(trimmed) >= len(self.sent):
                return trimmed
            clause = close_sentence(trim_to_clause(text))  # a first sentence the limit cut: its clauses so far
            return clause if clause and clause.startswith(self.sent) else text
        if finish_reason in ("stop", "sentence"):
            closed = close_sentence(text)
            return closed if closed.startswith(self.sent) else text
        return text


class _Stream:
    """Per request of a batch: its :class:`_Answer` (thread-safe: an engine may stream rows from threads)."""

    def __init__(self, answers: Sequence[_Answer]) -> None:
        self.answers = answers
        self.lock = threading.Lock()

    def __call__(self, i: int, text: str) -> bool:
        with self.lock:
            return self.answers[i].add(text)


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
            symbol=scene.symbol or catalogue().symbols.get(register),
            replay_of=scene.replay_of,
            final=final,
            seq=seq,
            **fields,
        )

    def adapter_version(self, adapter: str) -> Optional[str]:
        """``name@hash`` of the adapter weights the engine serves as ``adapter``, as the engine recorded them
        when it loaded them (None for the base model, or an adapter whose weights the engine cannot see)."""
        return (getattr(self.engine, "versions", None) or {}).get(adapter)

    def final(
        self, scene: Scene, gen: Generation, seq: int, timings: dict[str, float], answer: Optional[_Answer] = None
    ) -> LoraOutput:
        """The whole answer of ``scene`` (a cancelled one is marked so, never an answer)."""
        cancelled = gen.finish_reason == "cancelled"
        answer = answer or _Answer(self, scene, None, self.params(scene).max_new_tokens)
        return self.output(
            scene,
            answer.final_text(gen.text, gen.finish_reason),
            final=True,
            seq=seq,
            adapter=gen.adapter,
            adapter_version=self.adapter_version(gen.adapter),
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
        request = self.request(scene)
        answer = _Answer(self, scene, send, request.params.max_new_tokens)
        arrived = time.time()

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
            if answer.first_sent is not None:
                timings["first_piece"] = round((answer.first_sent - arrived) * 1000, 2)
            done(self.final(scene, outcome, seq=answer.count, timings=timings, answer=answer))

        job = Job(job_id, request, on_delta=answer.add, on_done=on_done)
        return job

    def answer(self, requests: Sequence[Request]) -> list[tuple[Generation, str]]:
        """Requests as they are (any adapter, or the base model's :data:`~.engines.BASE`) in one engine call,
        through the answer policy of :meth:`decode`: each stops at a sentence end once it has
        ``answer_min_tokens``, and one that reaches its token limit is trimmed to its last complete sentence,
        never shorter than what would have streamed (every piece as it settles, unpaced: the strictest stream).
        Each request's generation and final text, in order: what a user gets (``bench quality`` measures it)."""
        if not requests:
            return []
        limits = [resolve_params(r.params, self.settings).max_new_tokens for r in requests]
        answers = [_Answer(self, None, None, limit, streamed=True) for limit in limits]
        generations = self.engine.generate(requests, on_delta=_Stream(answers))
        return [(gen, answer.final_text(gen.text, gen.finish_reason)) for gen, answer in zip(generations, answers)]

    def decode(self, scenes: Sequence[Scene], partial: Optional[Partial] = None) -> list[LoraOutput]:
        """The batch decoder (``SCENESTREAM_DECODER_MODE=batch``): every scene in one engine call."""
        if not scenes:
            return []
        started_ms = now_ms()
        started = time.perf_counter()
        requests = self.requests(scenes)
        answers = [_Answer(self, sc, partial, r.params.max_new_tokens) for sc, r in zip(scenes, requests)]
        watch = partial is not None or self.settings.answer_min_tokens > 0  # else nothing reads the steps
        generations = self.engine.generate(requests, on_delta=_Stream(answers) if watch else None)
        outputs = []
        for i, (scene, gen) in enumerate(zip(scenes, generations)):
            timings = {
                "queue": float(max(0, started_ms - scene.ts_ms)),
                "generate": gen.total_ms,
                "decode": round((time.perf_counter() - started) * 1000, 2),
            }
            if gen.first_token_ms is not None:
                timings["first_token"] = gen.first_token_ms
            outputs.append(self.final(scene, gen, seq=answers[i].count, timings=timings, answer=answers[i]))
        return outputs
