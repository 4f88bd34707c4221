"""bench_serve's arithmetic and rendering (the run itself needs a serve: see the README's figures)."""

from __future__ import annotations

import asyncio

from scenestream.ops.bench_serve import open_loop, percentiles, render, summary


def test_percentiles_and_summary():
    assert percentiles([]) == {"n": 0}
    p = percentiles([float(v) for v in range(1, 101)])
    assert p == {"n": 100, "p50_ms": 50.5, "p99_ms": 99.0}
    rows = [{"answer_ms": 10.0}, {"answer_ms": 30.0}, {"error": "APIStatusError: 429 busy"}]
    got = summary(rows, ("answer_ms", "first_token_ms"))
    assert got["requests"] == 3 and got["errors"] == 1 and got["answer_ms"]["p50_ms"] == 20.0
    assert got["first_token_ms"] == {"n": 0} and got["first_errors"] == ["APIStatusError: 429 busy"]


def test_open_loop_starts_requests_at_the_rate_without_waiting_for_answers():
    starts = []

    async def go():
        loop = asyncio.get_running_loop()

        async def make(i):
            starts.append(loop.time())
            await asyncio.sleep(0.3)  # slower than the interval: the next one starts anyway
            return {"i": i}

        return await open_loop(make, rate=20, seconds=0.25)

    results = asyncio.run(go())
    assert [r["i"] for r in results] == [0, 1, 2, 3, 4]
    assert starts[-1] - starts[0] < 0.3


def test_render_names_every_figure():
    stat = {"n": 2, "p50_ms": 1.0, "p99_ms": 2.0}
    report = {
        "ready_s": 9.0,
        "max_tokens": 32,
        "rates": {
            "1.0": {
                "api": {"requests": 2, "errors": 0, "scene_ms": stat, "first_token_ms": stat, "answer_ms": stat},
                "direct": {"requests": 2, "errors": 0, "first_token_ms": stat, "answer_ms": stat},
                "api_added_first_token_p50_ms": 0.0,
            }
        },
        "idle": {"idle_websockets": 200, "rate": 1.0, "errors": 0, "still_open": 200, "first_token_ms": stat},
        "burst": {"requests": 50, "answered": 50, "refused_429": 0, "failed_otherwise": 0, "rss_mib": {}},
    }
    text = render(report)
    assert "1.0 req/s" in text and "200 idle WebSockets" in text and "burst of 50: 50 answered" in text
