"""Chaos: workers killed with SIGKILL under a steady load; what is lost, doubled, paused.

    scenestream bench chaos --json                                   # 2,000 messages, tokenizer+scene x2, memory x1
    scenestream bench chaos --messages 300 --kills 2 --json          # the integration tier's small version

The benchmark starts its own embedded broker and, as separate processes
(``scenestream run --stages …``), ``--workers`` workers of the killable stages
(tokenizer and scene: they share partitions) and one worker of the memory
stage (Qdrant Edge is single-process; several memory workers need a Qdrant
server). It publishes ``--messages`` texts at ``--rate`` per second, and every
``--kill-every`` seconds (a range: a random time in it) SIGKILLs one killable
worker and starts a new one in its place. An observer reads every output topic
from the start and attributes each record to the worker that sent it (the
``x-worker`` header).

Reported: lost (published, never reached the last stage's topic), duplicated
ids per topic (an id answered more than once by one stage), dead-lettered,
the archive's count, and per kill: the longest pause of every surviving
worker's output in the 30 s after it (its output stopped while its inputs kept
coming: a stop-the-world rebalance) and how long until every partition the
killed worker was serving got output again (from any worker).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from scenestream.schemas.codec import SchemaError, decode, encode
from scenestream.schemas.records import DeadLetter, MemoryEvent, RawText, Scene, Tokens
from scenestream.settings import Settings

CLI = [sys.executable, "-m", "scenestream"]
TEXTS = [
    "Почему я не чувствую шаг в себе?",
    "The sea at night breathes slowly.",
    "Сколько будет 17 умножить на 23?",
    "My shoulders are tight after work.",
    "Что остаётся от человека, когда он молчит?",
    "Write me something about autumn rain.",
    "Я не могу уснуть третью ночь подряд.",
    "Is time something we have or something we are?",
]


def _env(settings: Settings, data_dir: Path, name: str | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        SCENESTREAM_BROKER=settings.broker,
        SCENESTREAM_TOPIC_PREFIX=settings.topic_prefix,
        SCENESTREAM_APP_ID=settings.app_id,
        SCENESTREAM_DATA_DIR=str(data_dir),
        SCENESTREAM_LOG_LEVEL="WARNING",
    )
    if name is not None:
        env["SCENESTREAM_WORKER_NAME"] = name
    return env


class Observer:
    """Reads every output topic from the start: per topic, each record's id, worker, partition and arrival."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = {
            "tokens": Tokens,
            "scenes": Scene,
            "memory-events": MemoryEvent,
            "raw-text.dlq": DeadLetter,
            "tokens.dlq": DeadLetter,
            "scenes.dlq": DeadLetter,
        }
        self.rows: dict[str, list[tuple[float, str, str, int, object]]] = defaultdict(list)
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        from scenestream.kafka import start_reader

        self.consumer = await start_reader(self.settings, reset="earliest")
        await self.consumer._client.force_metadata_update()  # the topics were created a moment ago
        prefix = self.settings.topic_prefix
        tps = [
            TopicPartition(prefix + name, p)
            for name in self.names
            for p in sorted(self.consumer.partitions_for_topic(prefix + name) or ())
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        prefix = self.settings.topic_prefix
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for tp, records in batch.items():
                name = tp.topic[len(prefix) :]
                for record in records:
                    try:
                        item = decode(record.value, self.names[name])
                    except SchemaError:
                        continue
                    worker = dict(record.headers or ()).get("x-worker", b"?").decode()
                    self.rows[name].append((now, item.message_id or "?", worker, tp.partition, item))

    def ids(self, topic: str, keep=lambda item: True) -> Counter:
        return Counter(mid for _t, mid, _w, _p, item in self.rows[topic] if keep(item))

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


def _pid(worker: str) -> int:
    return int(worker.rsplit(":", 1)[-1]) if worker[-1:].isdigit() else -1


def _kill_effects(rows: list, kills: list[tuple[float, int]], origin: float, window: float = 30.0) -> list[dict]:
    """Per kill: the surviving workers' longest output gap after it, and when the killed worker's partitions
    were served again (output on each of them after the kill, by anyone)."""
    effects = []
    for at, pid in kills:
        before = [(t, w, p) for t, _m, w, p, _i in rows if at - 5.0 <= t < at]
        owned = {p for _t, w, p in before if _pid(w) == pid}
        after = sorted((t, w, p) for t, _m, w, p, _i in rows if at <= t < at + window)
        survivors = {w for _t, w, _p in before if _pid(w) != pid}
        pauses = []
        for worker in survivors:
            times = [at] + [t for t, w, _p in after if w == worker] + [min(at + window, after[-1][0] if after else at)]
            pauses.append(max(b - a for a, b in zip(times, times[1:])))
        served = {}
        for t, _w, p in after:
            if p in owned and p not in served:
                served[p] = t - at
        effects.append(
            {
                "at_s": round(at - origin, 2),
                "killed_pid": pid,
                "partitions_of_the_killed": sorted(owned),
                "survivors_longest_pause_s": round(max(pauses), 2) if pauses else None,
                "served_again_by_partition_s": {p: round(served[p], 2) if p in served else None for p in sorted(owned)},
                "partitions_served_again_s": round(max(served.values()), 2)
                if owned and len(served) == len(owned)
                else None,
            }
        )
    return effects


async def _publish(settings: Settings, records: list[RawText], rate: float) -> None:
    from scenestream.backbone import start_producer
    from scenestream.topics import RAW_TEXT

    producer = await start_producer(settings)
    try:
        topic = RAW_TEXT.full_name(settings)
        started = time.monotonic()
        futures = []
        for i, record in enumerate(records):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            futures.append(await producer.send(topic, key=record.session_id.encode(), value=encode(record)))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def run_chaos(
    messages: int = 2000,
    rate: float = 20.0,
    workers: int = 2,
    kill_every: tuple[float, float] = (10.0, 20.0),
    kills: int | None = None,
    memory: bool = True,
    seed: int = 0,
    static: bool = False,
    drain_s: float = 120.0,
    progress: bool = True,
) -> dict:
    """Run the chaos benchmark (see the module doc); returns the report."""
    from scenestream.broker import EmbeddedBroker
    from scenestream.topics import create_topics

    def say(msg: str) -> None:
        if progress:
            print(f"chaos: {msg}", file=sys.stderr, flush=True)

    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="scenestream-chaos-"))
    procs: list[subprocess.Popen] = []
    with EmbeddedBroker() as broker:
        settings = Settings(broker=broker.url, topic_prefix="chaos-", app_id="chaos")
        asyncio.run(create_topics(settings))
        killable = "tokenizer,scene"

        def start_worker(stages: str, data_dir: Path, name: str | None = None) -> subprocess.Popen:
            proc = subprocess.Popen(
                CLI + ["run", "--stages", stages],
                env=_env(settings, data_dir, name if static else None),
                stdout=subprocess.DEVNULL,
                stderr=open(tmp / f"worker-{len(procs)}.log", "w"),  # noqa: SIM115 - the process keeps it
            )
            procs.append(proc)
            return proc

        live = [start_worker(killable, tmp / f"w{i}", f"w{i}") for i in range(workers)]
        names = {proc.pid: f"w{i}" for i, proc in enumerate(live)}
        if memory:
            start_worker("memory", tmp / "memory")
        records = [
            RawText(
                message_id=f"chaos-{i:05d}",
                session_id=f"s{i % 32}",
                text=f"{TEXTS[i % len(TEXTS)]} ({i})",
                source="chaos",
            )
            for i in range(messages)
        ]

        async def scenario() -> dict:
            observer = Observer(settings)
            await observer.start()
            try:
                say(f"{workers} tokenizer+scene workers{' and a memory worker' if memory else ''} starting …")
                await asyncio.sleep(15)  # joins and model loads
                say(
                    f"publishing {messages} messages at {rate:g}/s, "
                    f"a SIGKILL every {kill_every[0]:g}-{kill_every[1]:g} s"
                )
                publisher = asyncio.create_task(_publish(settings, records, rate))
                started = time.monotonic()
                killed: list[tuple[float, int]] = []
                while not publisher.done() and (kills is None or len(killed) < kills):
                    wait = rng.uniform(*kill_every)
                    done, _ = await asyncio.wait({publisher}, timeout=wait)
                    if done:
                        break
                    victim = live.pop(rng.randrange(len(live)))
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    killed.append((time.monotonic(), victim.pid))
                    say(f"killed worker {victim.pid} at {time.monotonic() - started:.1f} s; starting another")
                    # the replacement takes the killed worker's name (static membership, --static)
                    replacement = start_worker(killable, tmp / f"w{len(procs)}", names[victim.pid])
                    names[replacement.pid] = names[victim.pid]
                    live.append(replacement)
                await publisher
                last = "scenes"
                final = (lambda s: s.stage == "resonated") if memory else (lambda s: s.stage == "formed")
                wanted = {r.message_id for r in records}
                deadline = time.monotonic() + drain_s
                while time.monotonic() < deadline and not wanted <= set(observer.ids(last, final)):
                    await asyncio.sleep(0.5)
                await asyncio.sleep(3)  # late duplicates
                return {
                    "observer": observer,
                    "killed": killed,
                    "started": started,
                    "elapsed_s": time.monotonic() - started,
                }
            finally:
                await observer.stop()

        try:
            outcome = asyncio.run(scenario())
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    observer = outcome["observer"]
    wanted = {r.message_id for r in records}
    topics = {
        "tokens": observer.ids("tokens"),
        "scenes (formed)": observer.ids("scenes", lambda s: s.stage == "formed"),
    }
    if memory:
        topics["scenes (resonated)"] = observer.ids("scenes", lambda s: s.stage == "resonated")
        topics["memory-events (stored)"] = observer.ids("memory-events", lambda e: e.event == "stored")
    last = topics["scenes (resonated)" if memory else "scenes (formed)"]
    dead = {name: len(observer.rows[name]) for name in ("raw-text.dlq", "tokens.dlq", "scenes.dlq")}
    archive_count = None
    if memory:
        from scenestream.agents.memory.archive import EdgeArchive

        with EdgeArchive(tmp / "memory" / "archive") as archive:
            archive_count = archive.count()
    formed = [row for row in observer.rows["scenes"] if row[4].stage == "formed"]  # the killable workers' output
    effects = _kill_effects(formed, outcome["killed"], outcome["started"])
    pauses = [e["survivors_longest_pause_s"] for e in effects if e["survivors_longest_pause_s"] is not None]
    served = [e["partitions_served_again_s"] for e in effects if e["partitions_served_again_s"] is not None]
    return {
        "benchmark": "chaos",
        "messages": messages,
        "rate_per_s": rate,
        "workers": workers,
        "static_membership": static,
        "kills": len(outcome["killed"]),
        "lost": len(wanted - set(last)),
        "duplicated_ids": {name: sum(1 for n in ids.values() if n > 1) for name, ids in topics.items()},
        "extra_copies": {name: sum(n - 1 for n in ids.values() if n > 1) for name, ids in topics.items()},
        "dead_lettered": dead,
        "archive_count": archive_count,
        "per_kill": effects,
        "survivors_pause_p50_s": round(statistics.median(pauses), 2) if pauses else None,
        "survivors_pause_max_s": max(pauses) if pauses else None,
        "served_again_p50_s": round(statistics.median(served), 2) if served else None,
        "served_again_max_s": max(served) if served else None,
        "targets": {"lost": 0, "duplicates": 0, "survivors_pause_s": 1.0, "served_again_s": 8.0},
        "logs": str(tmp),
    }
