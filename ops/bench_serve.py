"""Benchmark of ``scenestream serve``: streaming OpenAI clients against the API, the same load straight to Kafka.

    python -m scenestream.ops.bench_serve [--seconds 20] [--rates 1,2] [--idle 200] [--burst 50] [--json]

One run starts ``scenestream serve`` on its own embedded stack (this environment's ``SCENESTREAM_*`` settings,
a fresh data directory) and measures, at the client:

* for each rate (requests per second, open loop, ``--seconds`` each), every other request through the API
  (``openai``'s ``AsyncOpenAI``, streaming: the time to the first chunk, which holds the scene, to the first
  token and to the whole answer) and the others straight to Kafka on the same stack (``publish`` + a
  ``Watcher``, as ``bench e2e`` and ``ask`` do: the time to the first piece and to the final answer), so both
  paths meet the same queue; the API's added latency is the difference of the first-token p50s;
* ``--idle`` WebSocket connections held open (authenticated, silent) while the first rate runs again: errors,
  connections still open at the end, first-token p50 beside the run without them;
* a burst of ``--burst`` streaming requests at once: answered, refused with 429, failed otherwise, and the
  serve process's resident memory before, after, and after a settle.

Latencies on a shared CPU machine move with its load: the figures are for comparison inside one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

TEXTS = (
    "Почему я не чувствую шаг в себе?",
    "How many minutes are in a day?",
    "Тишина перед входом дрожит.",
    "What is the meaning of a promise?",
    "Дыхание замедляется, плечи тяжелеют.",
    "Why do people believe in luck?",
)


def percentiles(values: Sequence[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 1), "p99_ms": round(p99, 1)}


def rss_mib(pid: int) -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def api_request(client: Any, text: str, max_tokens: int) -> dict:
    started = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        stream = await client.chat.completions.create(
            model="scenestream",
            messages=[{"role": "user", "content": text}],
            stream=True,
            max_tokens=max_tokens,
        )
        async for chunk in stream:
            now = (time.perf_counter() - started) * 1000
            out.setdefault("scene_ms", now)
            if chunk.choices and chunk.choices[0].delta.content:
                out.setdefault("first_token_ms", now)
        out["answer_ms"] = (time.perf_counter() - started) * 1000
    except Exception as exc:  # counted, not raised: a benchmark reports failures
        out["error"] = f"{type(exc).__name__}: {getattr(exc, 'status_code', '')} {exc}"[:200]
        out["status"] = getattr(exc, "status_code", None)
    return out


async def open_loop(make, rate: float, seconds: float) -> list[dict]:
    """``make()`` started every ``1 / rate`` s for ``seconds``; every result once all have finished."""
    tasks = []
    started = time.perf_counter()
    for i in range(max(1, int(rate * seconds))):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(make(i)))
    return list(await asyncio.gather(*tasks))


def summary(results: list[dict], keys: Sequence[str]) -> dict:
    row: dict[str, Any] = {"requests": len(results), "errors": sum(1 for r in results if "error" in r)}
    for key in keys:
        row[key] = percentiles([r[key] for r in results if key in r])
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        row["first_errors"] = errors[:3]
    return row


async def mixed_run(
    client: Any, settings: Any, rate: float, seconds: float, max_tokens: int, serial: bool = False
) -> tuple[list, list]:
    """``rate`` requests per second, every other one through the API and the rest straight to Kafka (publish a
    raw text, wait on a Watcher: no API in the path), so both paths meet the same queue; (api, direct)."""
    from scenestream.client import Watcher, publish, raw_text
    from scenestream.schemas.records import GenerationParams
    from scenestream.topics import LORA_OUTPUTS, PIPELINE, SCENES

    first_piece: dict[str, float] = {}
    watched = {SCENES.full_name(settings): SCENES.schema, LORA_OUTPUTS.full_name(settings): LORA_OUTPUTS.schema}
    dlqs = [d.dlq_name(settings) for d in PIPELINE if d.has_dlq]
    watcher = Watcher(
        settings, watched, dlqs, on_partial=lambda p: first_piece.setdefault(p.message_id, time.perf_counter())
    )
    await watcher.start()
    waiting: dict[str, asyncio.Future] = {}

    async def pump() -> None:  # one reader for every message of the run (Watcher.wait reads for all of them)
        while True:
            batch = await watcher.consumer.getmany(timeout_ms=50)
            for records in batch.values():
                for record in records:
                    watcher._note(record)
            for mid, fut in list(waiting.items()):
                got = watcher.seen.get(mid, {})
                if LORA_OUTPUTS.full_name(settings) in got and not fut.done():
                    fut.set_result(time.perf_counter())

    reader = asyncio.create_task(pump())

    async def one(i: int) -> dict:
        record = raw_text(TEXTS[i % len(TEXTS)], params=GenerationParams(max_new_tokens=max_tokens), source="bench")
        fut = asyncio.get_running_loop().create_future()
        waiting[record.message_id] = fut
        started = time.perf_counter()
        await publish(settings, [record])
        try:
            done = await asyncio.wait_for(fut, 300)
        except TimeoutError:
            return {"error": "no answer within 300 s"}
        out = {"answer_ms": (done - started) * 1000}
        if record.message_id in first_piece:
            out["first_token_ms"] = (first_piece[record.message_id] - started) * 1000
        return out

    async def either(i: int) -> dict:
        if i % 2 == 0:
            return {"path": "api", **await api_request(client, TEXTS[i % len(TEXTS)], max_tokens)}
        return {"path": "direct", **await one(i)}

    try:
        if serial:
            results = [await either(i) for i in range(max(1, int(rate * seconds)))]
        else:
            results = await open_loop(either, rate, seconds)
        return [r for r in results if r["path"] == "api"], [r for r in results if r["path"] == "direct"]
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        await watcher.stop()


async def idle_sockets(url: str, count: int) -> list:
    from websockets.asyncio.client import connect

    sockets = []
    for _ in range(count):
        sockets.append(await connect(url.replace("http", "ws") + "/v1/ws", open_timeout=30))
    return sockets


async def bench(url: str, pid: int, settings: Any, args: argparse.Namespace) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=600)
    report: dict[str, Any] = {"max_tokens": args.max_tokens, "seconds": args.seconds, "rates": {}}
    for i in range(2):  # warm-up: the engine's first steps, the connections
        await api_request(client, TEXTS[i], args.max_tokens)
    if args.pairs:  # one at a time, API then Kafka: the API's own cost without a queue
        api, direct = await mixed_run(client, settings, 1000.0, 2 * args.pairs / 1000.0, args.max_tokens, serial=True)
        row = {"api": summary(api, ("scene_ms", "first_token_ms", "answer_ms"))}
        row["direct"] = summary(direct, ("first_token_ms", "answer_ms"))
        a, d = row["api"]["first_token_ms"], row["direct"]["first_token_ms"]
        if a.get("n") and d.get("n"):
            row["api_added_first_token_p50_ms"] = round(a["p50_ms"] - d["p50_ms"], 1)
        report["one_at_a_time"] = row
    for rate in args.rates:
        api, direct = await mixed_run(client, settings, rate, args.seconds, args.max_tokens)
        row = {
            "api": summary(api, ("scene_ms", "first_token_ms", "answer_ms")),
            "direct": summary(direct, ("first_token_ms", "answer_ms")),
        }
        a, d = row["api"]["first_token_ms"], row["direct"]["first_token_ms"]
        if a.get("n") and d.get("n"):
            row["api_added_first_token_p50_ms"] = round(a["p50_ms"] - d["p50_ms"], 1)
        a, d = row["api"]["answer_ms"], row["direct"]["answer_ms"]
        if a.get("n") and d.get("n"):
            row["api_added_answer_p50_ms"] = round(a["p50_ms"] - d["p50_ms"], 1)
        report["rates"][str(rate)] = row
    if args.idle:
        first = args.rates[0]
        sockets = await idle_sockets(url, args.idle)
        try:
            loaded = await open_loop(
                lambda i: api_request(client, TEXTS[i % len(TEXTS)], args.max_tokens), first, args.seconds
            )
            still_open = 0
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(await ws.ping(), 10)
                    still_open += 1
        finally:
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await ws.close()
        row = summary(loaded, ("scene_ms", "first_token_ms", "answer_ms"))
        row.update({"idle_websockets": args.idle, "still_open": still_open, "rate": first})
        without = report["rates"][str(first)]["api"]["first_token_ms"].get("p50_ms")
        if without and row["first_token_ms"].get("n"):
            row["first_token_p50_change_pct"] = round(100 * (row["first_token_ms"]["p50_ms"] / without - 1), 1)
        report["idle"] = row
    if args.burst:
        before = rss_mib(pid)
        results = await asyncio.gather(
            *[api_request(client, TEXTS[i % len(TEXTS)], args.max_tokens) for i in range(args.burst)]
        )
        after = rss_mib(pid)
        await asyncio.sleep(5)
        report["burst"] = {
            "requests": args.burst,
            "answered": sum(1 for r in results if "answer_ms" in r and "error" not in r),
            "refused_429": sum(1 for r in results if r.get("status") == 429),
            "failed_otherwise": sum(1 for r in results if "error" in r and r.get("status") != 429),
            "answer_ms": percentiles([r["answer_ms"] for r in results if "answer_ms" in r]),
            "rss_mib": {"before": before, "after": after, "settled": rss_mib(pid)},
        }
    await client.close()
    return report


def run(args: argparse.Namespace) -> dict:
    import httpx

    from scenestream.broker import reachable
    from scenestream.serving import serve_process
    from scenestream.settings import Settings

    data = Path(tempfile.mkdtemp(prefix="scenestream-bench-serve-"))
    with serve_process(data, ready_timeout=600, drop=("SCENESTREAM_API_KEYS",)) as served:
        settings = reachable(Settings(data_dir=data))
        report = asyncio.run(bench(served.url, served.proc.pid, settings, args))
        report["ready_s"] = served.ready_s
        report["engine"] = httpx.get(f"{served.url}/v1/models").json()["data"][0]["root"]
        return report


def render(report: dict) -> str:
    lines = [f"serve ready in {report['ready_s']} s; {report['max_tokens']} tokens per answer"]
    if "one_at_a_time" in report:
        row = report["one_at_a_time"]
        lines.append(
            f"one at a time: API first token p50 {row['api']['first_token_ms'].get('p50_ms')} ms, Kafka first "
            f"piece p50 {row['direct']['first_token_ms'].get('p50_ms')} ms; "
            f"API added {row.get('api_added_first_token_p50_ms')} ms"
        )
    for rate, row in report["rates"].items():
        api, direct = row["api"], row["direct"]
        lines.append(
            f"{rate} req/s: API scene p50 {api['scene_ms'].get('p50_ms')} ms, first token p50/p99 "
            f"{api['first_token_ms'].get('p50_ms')}/{api['first_token_ms'].get('p99_ms')} ms, answer p50/p99 "
            f"{api['answer_ms'].get('p50_ms')}/{api['answer_ms'].get('p99_ms')} ms ({api['errors']} errors); "
            f"direct first piece p50 {direct['first_token_ms'].get('p50_ms')} ms, answer p50 "
            f"{direct['answer_ms'].get('p50_ms')} ms; API added {row.get('api_added_first_token_p50_ms')} ms"
        )
    if "idle" in report:
        idle = report["idle"]
        lines.append(
            f"{idle['idle_websockets']} idle WebSockets at {idle['rate']} req/s: {idle['errors']} errors, "
            f"{idle['still_open']} still open, first token p50 {idle['first_token_ms'].get('p50_ms')} ms "
            f"({idle.get('first_token_p50_change_pct')}% against none)"
        )
    if "burst" in report:
        burst = report["burst"]
        lines.append(
            f"burst of {burst['requests']}: {burst['answered']} answered, {burst['refused_429']} refused (429), "
            f"{burst['failed_otherwise']} failed otherwise; RSS MiB {burst['rss_mib']}"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="Seconds of load per rate.")
    parser.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")], default=[1.0, 2.0])
    parser.add_argument("--idle", type=int, default=200, help="Idle WebSocket connections (0: skip).")
    parser.add_argument("--burst", type=int, default=50, help="Requests sent at once (0: skip).")
    parser.add_argument("--max-tokens", type=int, default=32, help="Tokens per answer.")
    parser.add_argument("--pairs", type=int, default=6, help="API/Kafka pairs asked one at a time (0: skip).")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    args = parser.parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
