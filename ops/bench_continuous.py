"""``scenestream bench inflight``: how many answers the continuous decoder should keep in flight.

The same held-out scenes as ``bench decoder`` (all four adapters mixed), one engine, side by side in one
run: (c) the whole set as one batch (``SCENESTREAM_DECODER_MODE=batch`` with every scene waiting), then the
engine kept running (:mod:`~scenestream.agents.decoder.loop`) with at most N answers in flight for each N
asked for: a new scene is admitted the moment one finishes. Reported per N: tokens/s, time to first token
and time to the whole answer (from admission; p50/p99), and tokens/s as a share of the batch's.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Sequence

from scenestream.ops.bench_decoder import _run, heldout_scenes
from scenestream.settings import get_settings


def _pct(values: Sequence[float], q: float):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None


def continuous_run(engine, requests, most: int) -> dict:
    """``requests`` through the running engine, at most ``most`` at once, the next admitted as one finishes."""
    from scenestream.agents.decoder.loop import Job, engine_loop

    loop = engine_loop(engine, most)
    pending = list(enumerate(requests))
    finished: list = []
    lock = threading.Lock()
    all_done = threading.Event()

    def submit_next() -> None:
        with lock:
            if not pending:
                return
            i, request = pending.pop(0)

        def on_done(outcome, i=i) -> None:
            if isinstance(outcome, BaseException):
                raise outcome
            with lock:
                finished.append((outcome, job_of[i]))
                complete = len(finished) == len(requests)
            if complete:
                all_done.set()
            else:
                submit_next()

        job = Job(f"bench-{i}", request, on_delta=lambda text: False, on_done=on_done)
        job_of[i] = job
        loop.submit(job)

    job_of: dict = {}
    started = time.perf_counter()
    try:
        for _ in range(min(most, len(requests))):
            submit_next()
        if not all_done.wait(3600):
            raise TimeoutError("the continuous run did not finish within an hour")
    finally:
        loop.close()
    wall = time.perf_counter() - started
    tokens = sum(gen.completion_tokens for gen, _job in finished)
    firsts = [gen.first_token_ms for gen, _job in finished if gen.first_token_ms is not None]
    answers = [gen.total_ms for gen, _job in finished]
    return {
        "in_flight": most,
        "requests": len(requests),
        "generated_tokens": tokens,
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_ms": _pct(firsts, 0.5),
        "ttft_p99_ms": _pct(firsts, 0.99),
        "answer_p50_ms": _pct(answers, 0.5),
        "answer_p99_ms": _pct(answers, 0.99),
    }


def run_inflight_bench(caps: Sequence[int] = (4, 8, 16, 32, 64), n: int = 64, progress: bool = True) -> dict:
    from scenestream.agents.decoder.engines import make_engine
    from scenestream.agents.decoder.transform import Decoder

    settings = get_settings()

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    scenes, _rows = heldout_scenes(n, settings)
    say("inflight bench: loading the engine …")
    engine = make_engine(settings)
    try:
        requests = Decoder(engine, settings=settings).requests(scenes)
        say("inflight bench: warm-up (not counted) …")
        engine.generate(requests[:4])
        say(f"inflight bench: (c) all {len(requests)} as one batch …")
        batch = _run(engine, requests, len(requests))
        runs = []
        for most in caps:
            say(f"inflight bench: continuous, at most {most} in flight …")
            run = continuous_run(engine, requests, most)
            run["share_of_batch_tokens_per_s"] = round(run["tokens_per_s"] / batch["tokens_per_s"], 2)
            runs.append(run)
    finally:
        engine.close()
    best = max(run["tokens_per_s"] for run in runs)
    return {
        "benchmark": "inflight",
        "engine": engine.name,
        "scenes": len(scenes),
        "max_new_tokens": settings.max_new_tokens,
        "batch": batch,
        "continuous": runs,
        # the least N within 10% of the best throughput: more in flight only lengthens each answer
        "suggested_in_flight": min(run["in_flight"] for run in runs if run["tokens_per_s"] >= 0.9 * best),
        "median_share_of_batch": round(statistics.median(r["share_of_batch_tokens_per_s"] for r in runs), 2),
    }
