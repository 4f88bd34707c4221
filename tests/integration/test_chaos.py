"""The small chaos run (`scenestream bench chaos` at a few hundred messages): workers SIGKILLed under load lose
nothing, answer each message once, and the archive holds every scene once."""

from __future__ import annotations

from scenestream.ops.bench_chaos import run_chaos


def test_workers_killed_under_load_lose_nothing_and_answer_each_message_once():
    report = run_chaos(
        messages=300,
        rate=15.0,
        workers=2,
        kill_every=(6.0, 9.0),
        kills=2,
        memory=True,
        seed=1,
        drain_s=120.0,
        progress=False,
    )
    assert report["kills"] == 2, report
    assert report["lost"] == 0, report
    assert report["duplicated_ids"] == {name: 0 for name in report["duplicated_ids"]}, report
    assert report["archive_count"] == 300, report
    assert sum(report["dead_lettered"].values()) == 0, report
