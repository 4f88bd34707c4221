"""An engine kept running: requests join it one by one and leave it when each is done (continuous batching).

    loop = engine_loop(engine, max_inflight=16)
    loop.submit(Job("m1", request, on_delta=..., on_done=...))   # from any thread; returns at once
    loop.abort("m1")                                               # its on_done gets finish_reason "cancelled"
    loop.close()

One thread drives the engine. Its callbacks run on that thread: ``on_delta(text)``
gets each new piece of a request's raw text as the engine makes it and returns
True to end the request there (the answer is long enough and finished: it ends
with finish_reason ``sentence``); ``on_done(generation_or_error)`` is called
exactly once per submitted job.

* vLLM (:class:`VLLMLoop`): the engine core's step loop; a submitted request is
  added before the next step, so it joins the running batch at once (adapters of
  every register mixed in it as before); an aborted or stopped one leaves it at
  once, and a finished one is handed on the step it finishes.
* engines with only a batch ``generate`` (transformers: :class:`BatchLoop`):
  requests are admitted between batches: whatever waits when a batch ends forms
  the next one. An aborted row stops at the engine's next step (the others go on).
* engines that batch on a server (openai: :class:`ThreadLoop`): each request is
  its own streaming call on a thread of its own; an abort closes its stream.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from scenestream.agents.decoder.engines import Generation, Request, served_adapter

log = logging.getLogger(__name__)


class EngineFailed(RuntimeError):
    """The engine itself failed (not one request): the worker must stop and its messages be answered again."""

    stops_stage = True


@dataclass(eq=False)
class Job:
    """One request on its way through a running engine, with when it was submitted, admitted and answered."""

    id: str
    request: Request
    on_delta: Callable[[str], bool]
    on_done: Callable[[Union[Generation, BaseException]], None]
    submitted: float = field(default_factory=time.perf_counter)
    admitted: Optional[float] = None
    first: Optional[float] = None
    ended: Optional[float] = None
    prompt_tokens: int = 0
    tokens: int = 0
    parts: list[str] = field(default_factory=list)
    cancelled: bool = False
    done: bool = False

    def piece(self, text: str, tokens: int, now: float) -> bool:
        """Note new text (``tokens`` new tokens); True when the receiver wants the request to end here."""
        if tokens and self.first is None:
            self.first = now
        self.tokens += tokens
        if not text:
            return False
        self.parts.append(text)
        return bool(self.on_delta(text))

    def finish(self, adapters: dict, reason: Optional[str], now: Optional[float] = None) -> None:
        """Hand the finished generation on (once)."""
        if self.done:
            return
        self.done = True
        self.ended = now if now is not None else time.perf_counter()
        admitted = self.admitted if self.admitted is not None else self.ended
        generation = Generation(
            text="".join(self.parts),
            adapter=served_adapter(adapters, self.request.adapter),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.tokens,
            first_token_ms=round((self.first - admitted) * 1000, 2) if self.first is not None else None,
            total_ms=round((self.ended - admitted) * 1000, 2),
            finish_reason="cancelled" if self.cancelled else reason,
        )
        self._hand(generation)

    def fail(self, error: BaseException) -> None:
        if self.done:
            return
        self.done = True
        self.ended = time.perf_counter()
        self._hand(error)

    def _hand(self, outcome: Union[Generation, BaseException]) -> None:
        try:
            self.on_done(outcome)
        except Exception:  # a receiver's bug must not stop the engine's thread
            log.exception("job %s: its receiver failed", self.id)


class _Loop:
    """What every loop shares: a thread, an inbox of submissions and aborts, and the jobs it holds."""

    name = "engine-loop"

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.jobs: dict[str, Job] = {}
        self.closed = False
        self.failure: Optional[EngineFailed] = None
        self.thread = threading.Thread(target=self._guarded, name=self.name, daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        if self.failure is not None:  # the engine is gone: nothing will answer it
            job.fail(self.failure)
            return
        self.inbox.put(("add", job))

    def abort(self, job_id: str) -> None:
        self.inbox.put(("abort", job_id))

    @property
    def inflight(self) -> int:
        return len(self.jobs)

    def close(self) -> None:
        self.closed = True
        self.inbox.put(("close", None))
        self.thread.join(timeout=30)

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the engine is gone: every job learns it, none is left waiting
            log.exception("%s stopped", self.name)
            failure = EngineFailed(f"the decoder's engine failed: {type(exc).__name__}: {exc}")
            self.failure = failure
            for job in list(self.jobs.values()):
                job.fail(failure)
            self.jobs.clear()
            self.closed = True
            while True:
                try:
                    kind, item = self.inbox.get_nowait()
                except queue.Empty:
                    return
                if kind == "add":
                    item.fail(failure)

    def _take(self, block: bool) -> list[tuple[str, Any]]:
        """What waits in the inbox (waiting for something first when ``block``)."""
        items = []
        try:
            items.append(self.inbox.get(timeout=1.0) if block else self.inbox.get_nowait())
            while True:
                items.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        return items

    def _run(self) -> None:
        raise NotImplementedError


class VLLMLoop(_Loop):
    """vLLM's engine core stepped by one thread; requests join and leave between steps."""

    name = "vllm-loop"

    def _run(self) -> None:
        core = self.engine.llm.llm_engine
        while not self.closed:
            for kind, item in self._take(block=not self.jobs):
                if kind == "close":
                    return
                with self.engine.lock:
                    if kind == "add":
                        self._add(item)
                    elif kind == "abort" and item in self.jobs:
                        core.abort_request([item])
                        job = self.jobs.pop(item)
                        job.cancelled = True
                        job.finish(self.engine.adapters, "cancelled")
            if not self.jobs:
                continue
            with self.engine.lock:
                outputs = core.step()
            now = time.perf_counter()
            stopped = []
            for out in outputs:
                job = self.jobs.get(out.request_id)
                if job is None:
                    continue
                piece = out.outputs[0]
                if job.piece(piece.text, len(piece.token_ids), now) and not out.finished:
                    stopped.append(out.request_id)
                    self.jobs.pop(out.request_id)
                    job.finish(self.engine.adapters, "sentence", now)
                elif out.finished:
                    self.jobs.pop(out.request_id)
                    job.finish(self.engine.adapters, "length" if piece.finish_reason == "length" else "stop", now)
            if stopped:
                with self.engine.lock:
                    core.abort_request(stopped)

    def _add(self, job: Job) -> None:
        if job.cancelled:
            job.finish(self.engine.adapters, "cancelled")
            return
        try:
            job.prompt_tokens = self.engine.add(job.id, job.request)
        except Exception as exc:  # this request's fault (a prompt too long, an adapter that does not load)
            job.fail(exc)
            return
        job.admitted = time.perf_counter()
        self.jobs[job.id] = job


class _FlagAbort:
    """Aborts that must reach a job while the loop's thread is busy generating: the job is flagged at once
    (its next piece stops it) as well as told through the inbox."""

    jobs: dict[str, Job]
    inbox: queue.SimpleQueue

    def abort(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            job.cancelled = True
        self.inbox.put(("abort", job_id))


class BatchLoop(_FlagAbort, _Loop):
    """An engine with only a batch ``generate``: what waits when a batch ends forms the next one."""

    name = "batch-loop"

    def __init__(self, engine: Any, max_batch: int) -> None:
        self.max_batch = max_batch
        self.waiting: list[Job] = []
        # submitted and not yet in a batch: an abort finishes these at once, from the aborting thread, rather
        # than when the batch being generated ends (which on a busy CPU may be a minute away)
        self.pending: dict[str, Job] = {}
        self.lock = threading.Lock()
        super().__init__(engine)

    def submit(self, job: Job) -> None:
        with self.lock:
            self.pending[job.id] = job
        super().submit(job)

    def abort(self, job_id: str) -> None:
        with self.lock:
            job = self.pending.pop(job_id, None)
        if job is None:  # in the batch being generated (or gone): flagged, its next piece stops it
            super().abort(job_id)
            return
        job.cancelled = True
        job.finish(self.engine.adapters, "cancelled")

    def _run(self) -> None:
        while not self.closed:
            for kind, item in self._take(block=not self.waiting):
                if kind == "close":
                    return
                if kind == "add":
                    self.waiting.append(item)
                    self.jobs[item.id] = item
                elif kind == "abort" and item in self.jobs:
                    self.jobs[item].cancelled = True  # honoured when its batch ends
            batch = [job for job in self.waiting[: self.max_batch]]
            self.waiting = self.waiting[self.max_batch :]
            with self.lock:  # taken into the batch: from now on an abort is a flag
                batch = [job for job in batch if self.pending.pop(job.id, None) is not None]
            live = [job for job in batch if not job.cancelled]
            for job in batch:
                if job.cancelled:
                    job.finish(self.engine.adapters, "cancelled")
            for job in list(self.jobs.values()):
                if job.done:  # finished by an abort while it waited
                    self.jobs.pop(job.id, None)
            if not live:
                continue
            started = time.perf_counter()
            for job in live:
                job.admitted = started

            def delta(i: int, text: str, live: list[Job] = live) -> bool:
                """The row's new text; True stops the row (where the engine can: transformers does)."""
                if live[i].cancelled:
                    return True
                return live[i].piece(text, 0, time.perf_counter())

            try:
                generations = self.engine.generate([job.request for job in live], on_delta=delta)
            except Exception as exc:  # the batch failed: each of its requests goes its own way (the DLQ)
                for job in live:
                    self.jobs.pop(job.id, None)
                    job.fail(exc)
                continue
            for job, gen in zip(live, generations):
                self.jobs.pop(job.id, None)
                job.prompt_tokens, job.tokens = gen.prompt_tokens, gen.completion_tokens
                job.parts = [gen.text]
                if gen.first_token_ms is not None:
                    job.first = started + gen.first_token_ms / 1000
                job.finish(self.engine.adapters, gen.finish_reason, started + gen.total_ms / 1000)


class Aborted(Exception):
    """Raised inside a streaming call to end it (the request was cancelled)."""


class ThreadLoop(_FlagAbort, _Loop):
    """Each request its own streaming call to the engine (a server that batches), on its own thread."""

    name = "thread-loop"

    def __init__(self, engine: Any, max_inflight: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="decoder-request")
        super().__init__(engine)

    def _run(self) -> None:
        while not self.closed:
            for kind, item in self._take(block=True):
                if kind == "close":
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    return
                if kind == "add":
                    self.jobs[item.id] = item
                    self.pool.submit(self._one, item)
                elif kind == "abort" and item in self.jobs:
                    self.jobs[item].cancelled = True  # its stream ends at its next piece

    def _one(self, job: Job) -> None:
        job.admitted = time.perf_counter()

        def delta(_i: int, text: str) -> None:
            if job.cancelled:
                raise Aborted
            job.piece(text, 1, time.perf_counter())

        try:
            (gen,) = self.engine.generate([job.request], on_delta=delta)
        except Aborted:
            self.jobs.pop(job.id, None)
            job.finish(self.engine.adapters, "cancelled")
            return
        except Exception as exc:
            self.jobs.pop(job.id, None)
            job.fail(exc)
            return
        self.jobs.pop(job.id, None)
        job.prompt_tokens, job.tokens, job.parts = gen.prompt_tokens, gen.completion_tokens, [gen.text]
        job.finish(self.engine.adapters, "cancelled" if job.cancelled else gen.finish_reason)


def engine_loop(engine: Any, max_inflight: int) -> _Loop:
    """``engine`` kept running: its own loop where it has one (vLLM), else by how it batches."""
    if engine.name == "vllm":
        return VLLMLoop(engine)
    if engine.name == "openai":
        return ThreadLoop(engine, max_inflight)
    return BatchLoop(engine, max_inflight)
