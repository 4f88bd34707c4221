"""Transport benchmark: three trivial hops through the project's backbone vs raw aiokafka.

    scenestream bench transport [--json] [--messages 20000] [--rate 1000] [--rounds 3]

Both chains run on the same embedded broker, in alternating rounds, on fresh
topics each round, each in a process of its own (as a worker runs), while this
process offers the load and observes:

* **backbone**: three stages of :mod:`scenestream.backbone` (faust agents that
  decode a RawText, hand it to a handler that forwards it, wait for delivery,
  then ack), all in one faust worker;
* **raw**: three aiokafka consumer→producer loops (batch fetch, send, wait
  for delivery, commit).

Throughput pushes ``messages`` as fast as the producer can into the first
topic and times the last arrival on the fourth. Latency offers ``rate`` msg/s
for ``seconds``; an observer assigned to all four topics notes when each
message shows up on each topic, so a hop's latency is the difference between
two sightings by the same observer. Figures are medians over the rounds.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Sequence

from scenestream.schemas.codec import encode
from scenestream.schemas.records import RawText
from scenestream.settings import Settings, get_settings
from scenestream.topics import TopicDecl


@dataclass
class Forward:
    """The trivial handler: the record goes on unchanged to the next topic."""

    sink: TopicDecl

    def process(self, records: Sequence[RawText]) -> list:
        return [[(self.sink, record)] for record in records]

    def close(self) -> None:
        """Holds nothing."""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Observer:
    """Notes the arrival time of every key on every watched topic."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.settings = settings
        self.topics = topics
        self.seen: dict[str, dict[bytes, float]] = {t: {} for t in topics}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
        )
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in self.topics for p in sorted(self.consumer.partitions_for_topic(t))]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for tp, records in batch.items():
                seen = self.seen[tp.topic]
                for record in records:
                    seen.setdefault(record.key, now)

    async def wait_count(self, topic: str, n: int, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while len(self.seen[topic]) < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {len(self.seen[topic])}/{n} messages reached {topic}")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


async def _produce(settings: Settings, topic: str, n: int, rate: float | None, tag: str) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=settings.producer_linger_ms)
    await producer.start()
    payloads = [
        encode(RawText(message_id=f"{tag}-{i}", session_id=f"s{i % 64}", text=f"bench message {i}")) for i in range(n)
    ]
    futures = []
    started = time.perf_counter()
    for i, value in enumerate(payloads):
        if rate:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        futures.append(await producer.send(topic, key=f"{tag}-{i}".encode(), value=value))
    await asyncio.gather(*futures)
    await producer.stop()
    return started


async def _raw_hop(settings: Settings, source: str, sink: str, group: str, ready: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.session_timeout_s * 1000 / 3),
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=settings.producer_linger_ms)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            if consumer.assignment():
                ready.set()
            futures = [await producer.send(sink, key=r.key, value=r.value) for rs in batch.values() for r in rs]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def _create(settings: Settings, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(n, settings.partitions, 1) for n in names])
    await admin.close()


async def _serve_chain(settings: Settings, kind: str) -> None:
    """Run the three hops until cancelled; prints ``ready`` once they own their partitions."""
    from scenestream.app import create_app
    from scenestream.backbone import StageSpec, attach
    from scenestream.runtime import wait_assigned

    decls = [TopicDecl(f"t{i}", RawText) for i in range(4)]
    names = [d.full_name(settings) for d in decls]
    if kind == "backbone":
        app = create_app(settings)
        for i in range(3):
            spec = StageSpec(
                name=f"hop{i}",
                agent=f"forward_t{i}",
                source=decls[i],
                sinks=(decls[i + 1],),
                build=lambda _s, _r, sink=decls[i + 1]: Forward(sink),
            )
            attach(app, spec, settings)
        await app.start()
        try:
            await wait_assigned(app)
            print("ready", flush=True)
            await asyncio.Event().wait()
        finally:
            await app.stop()
    else:
        events = [asyncio.Event() for _ in range(3)]
        hops = [
            asyncio.create_task(_raw_hop(settings, names[i], names[i + 1], f"{settings.app_id}-hop{i}", events[i]))
            for i in range(3)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
            print("ready", flush=True)
            await asyncio.gather(*hops)
        finally:
            for hop in hops:
                hop.cancel()
            await asyncio.gather(*hops, return_exceptions=True)


async def _one_chain(settings: Settings, kind: str, messages: int, rate: float, seconds: float) -> dict:
    """One round: the chain in its own process (like a worker), load and observer in this one."""
    import os
    import subprocess

    run = uuid.uuid4().hex[:8]
    s = settings.model_copy(update={"topic_prefix": f"bench-{kind}-{run}-", "app_id": f"bench-{kind}-{run}"})
    decls = [TopicDecl(f"t{i}", RawText) for i in range(4)]
    names = [d.full_name(s) for d in decls]
    await _create(s, names + [d.dlq_name(s) for d in decls])
    env = dict(
        os.environ,
        SCENESTREAM_BROKER=s.broker,
        SCENESTREAM_TOPIC_PREFIX=s.topic_prefix,
        SCENESTREAM_APP_ID=s.app_id,
        SCENESTREAM_DATA_DIR=str(s.data_dir),
    )
    chain = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scenestream.ops.bench_transport", kind, env=env, stdout=subprocess.PIPE
    )
    observer = Observer(s, names)
    try:
        line = await asyncio.wait_for(chain.stdout.readline(), 90)
        if line.strip() != b"ready":
            raise RuntimeError(f"{kind} chain did not start (exit code {chain.returncode})")
        await observer.start()
        # throughput: a burst
        started = await _produce(s, names[0], messages, None, "burst")
        await observer.wait_count(names[3], messages, timeout=300)
        throughput = messages / (max(observer.seen[names[3]].values()) - started)
        # latency: a steady offered rate
        n = int(rate * seconds)
        await _produce(s, names[0], n, rate, "steady")
        await observer.wait_count(names[3], messages + n, timeout=120)
        hop_ms, e2e_ms = [], []
        for i in range(n):
            key = f"steady-{i}".encode()
            times = [observer.seen[t][key] for t in names]
            hop_ms += [(times[h + 1] - times[h]) * 1000 for h in range(3)]
            e2e_ms.append((times[3] - times[0]) * 1000)
    finally:
        if observer._task is not None:
            await observer.stop()
        if chain.returncode is None:
            chain.terminate()
            await chain.wait()
    return {
        "throughput_msgs_per_s": throughput,
        "hop_p50_ms": statistics.median(hop_ms),
        "hop_p99_ms": _percentile(hop_ms, 0.99),
        "e2e_p50_ms": statistics.median(e2e_ms),
        "e2e_p99_ms": _percentile(e2e_ms, 0.99),
    }


async def _bench(settings: Settings, messages: int, rate: float, seconds: float, rounds: int, progress: bool) -> dict:
    rows: dict[str, list[dict]] = {"raw": [], "backbone": []}
    for r in range(rounds):
        for kind in ("raw", "backbone") if r % 2 == 0 else ("backbone", "raw"):
            if progress:
                print(f"round {r + 1}/{rounds}: {kind} …", file=sys.stderr, flush=True)
            rows[kind].append(await _one_chain(settings, kind, messages, rate, seconds))
    med = {
        kind: {k: round(statistics.median(row[k] for row in runs), 2) for k in runs[0]} for kind, runs in rows.items()
    }
    return {
        "benchmark": "transport",
        "hops": 3,
        "messages": messages,
        "offered_rate_msgs_per_s": rate,
        "rounds": rounds,
        "partitions": settings.partitions,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "broker_storage": settings.broker_storage,
        "raw": med["raw"],
        "backbone": med["backbone"],
        "throughput_ratio": round(med["backbone"]["throughput_msgs_per_s"] / med["raw"]["throughput_msgs_per_s"], 3),
        "targets": {"throughput_ratio_min": 0.5, "hop_p99_ms_max": 20},
        "runs": rows,
    }


def run_bench(
    messages: int = 20_000,
    rate: float = 1_000.0,
    seconds: float = 5.0,
    rounds: int = 3,
    progress: bool = True,
    settings: Settings | None = None,
) -> dict:
    from scenestream.broker import broker_for

    with broker_for(settings or get_settings()) as s:
        return asyncio.run(_bench(s, messages, rate, seconds, rounds, progress))


def format_report(report: dict) -> str:
    lines = [
        f"transport: {report['hops']} hops, {report['messages']} msgs burst, "
        f"{report['offered_rate_msgs_per_s']:.0f} msg/s offered for latency, median of {report['rounds']} rounds",
        f"{'':10}{'msgs/s':>10}{'hop p50':>10}{'hop p99':>10}{'e2e p50':>10}{'e2e p99':>10}",
    ]
    for kind in ("raw", "backbone"):
        m = report[kind]
        lines.append(
            f"{kind:10}{m['throughput_msgs_per_s']:>10.0f}{m['hop_p50_ms']:>8.1f}ms{m['hop_p99_ms']:>8.1f}ms"
            f"{m['e2e_p50_ms']:>8.1f}ms{m['e2e_p99_ms']:>8.1f}ms"
        )
    lines.append(
        f"backbone/raw throughput ratio: {report['throughput_ratio']:.3f} (target ≥ 0.5); "
        f"backbone hop p99 {report['backbone']['hop_p99_ms']:.1f} ms (target ≤ 20 ms)"
    )
    return "\n".join(lines)


async def _serve_until_terminated(kind: str) -> None:
    task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await _serve_chain(get_settings(), kind)
    except asyncio.CancelledError:
        pass


if __name__ == "__main__":  # the chain process of one round: python -m scenestream.ops.bench_transport raw|backbone
    asyncio.run(_serve_until_terminated(sys.argv[1]))
