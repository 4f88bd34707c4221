"""The embedded broker starts, answers, and never outlives the process that started it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenestream.broker import EmbeddedBroker, _api_versions_ok, running_stack
from scenestream.settings import Settings

CLI = [sys.executable, "-m", "scenestream"]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_context_manager_starts_and_stops():
    with EmbeddedBroker() as broker:
        assert _api_versions_ok("127.0.0.1", broker.port, 1.0)
        pid = broker.process.pid
    assert wait_gone(pid)


def test_exception_inside_stops_the_broker():
    with pytest.raises(RuntimeError):
        with EmbeddedBroker() as broker:
            pid = broker.process.pid
            raise RuntimeError("boom")
    assert wait_gone(pid)


def _start_cli(args, tmp_path):
    env = dict(os.environ, SCENESTREAM_DATA_DIR=str(tmp_path), PYTHONFAULTHANDLER="1")
    env.pop("SCENESTREAM_BROKER", None)
    proc = subprocess.Popen(CLI + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not running_stack(Settings(data_dir=tmp_path)):
        time.sleep(0.1)
    state = running_stack(Settings(data_dir=tmp_path))
    assert state, proc.stderr.read().decode() if proc.poll() is not None else "no broker address published"
    brokers = children(proc.pid)
    assert len(brokers) == 1
    return proc, brokers[0], state


@pytest.mark.parametrize("args", [["broker"], ["run", "--stages", "tokenizer,scene"]])
def test_ctrl_c_leaves_no_broker_behind(tmp_path, args):
    proc, tansu, state = _start_cli(args, tmp_path)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps every thread on SIGABRT
        proc.send_signal(signal.SIGABRT)
        _out, err = proc.communicate(timeout=10)
        pytest.fail(f"{args} still running 30 s after Ctrl-C:\n{err.decode(errors='replace')[-6000:]}")
    assert wait_gone(tansu), "broker outlived Ctrl-C"
    assert not (tmp_path / "broker.json").exists()


def test_sigkill_of_the_parent_takes_the_broker_down(tmp_path):
    proc, tansu, _ = _start_cli(["broker"], tmp_path)
    proc.kill()
    proc.wait()
    assert wait_gone(tansu, timeout=1.0), "broker outlived its killed parent (it must stop at once)"
    assert running_stack(Settings(data_dir=tmp_path)) is None  # stale address is not trusted


def test_the_broker_listens_on_the_port_asked_for(tmp_path):
    from scenestream.broker import free_port

    port = free_port()
    proc, tansu, _ = _start_cli(["broker", "--port", str(port)], tmp_path)
    try:
        stack = running_stack(Settings(data_dir=tmp_path))
        assert stack is not None and stack["url"] == f"kafka://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        wait_gone(tansu, timeout=1.0)


def test_with_disk_storage_acknowledged_messages_survive_a_broker_crash(tmp_path):
    """SCENESTREAM_BROKER_STORAGE=disk: Tansu's s3 engine over s3rver keeps what it acknowledged through a SIGKILL."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from scenestream.topics import RAW_TEXT, create_topics

    settings = Settings(data_dir=tmp_path, broker_storage="disk")

    async def produce(url):
        s = settings.model_copy(update={"broker": url})
        await create_topics(s)
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
        await producer.start()
        try:
            sent = [await producer.send(RAW_TEXT.full_name(s), key=b"k", value=f"m{i}".encode()) for i in range(200)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    async def consume(url):
        consumer = AIOKafkaConsumer(bootstrap_servers=url[len("kafka://") :])
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(RAW_TEXT.full_name(settings)) or set()
            tps = [TopicPartition(RAW_TEXT.full_name(settings), p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            got, deadline = [], time.monotonic() + 15
            while len(got) < 200 and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [r.value for r in records]
            return got
        finally:
            await consumer.stop()

    first = EmbeddedBroker.from_settings(settings).start()
    try:
        asyncio.run(produce(first.url))
        first.process.send_signal(signal.SIGKILL)  # the broker crashes; its storage (s3rver's files) stays
        first.process.wait()
    finally:
        first.stop()
    with EmbeddedBroker.from_settings(settings) as second:
        got = asyncio.run(consume(second.url))
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(200))


def test_reading_from_the_beginning_reads_every_record_each_time(broker):
    """aiokafka's own offset reset at assign() may land after seek_to_beginning(); a reader that lost that race
    started at the end and read nothing (a trace with no records, a test waiting for an answer it had)."""
    import asyncio
    import uuid

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from scenestream.backbone import start_producer
    from scenestream.client import read_topics

    settings = Settings(broker=broker.url)
    names = [f"begin-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]

    async def fill() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 4, 1) for name in names])
        finally:
            await admin.close()
        producer = await start_producer(settings)
        try:
            for name in names:
                for k in range(8):
                    await (await producer.send(name, key=str(k).encode(), value=b"%d" % k))
                # and batches of several records: Tansu reports a partition's end as its last batch's first
                # offset + 1, and a reader cutting at that end lost the rest of the batch
                sent = [await producer.send(name, key=b"same", value=b"batched %d" % k) for k in range(5)]
                await asyncio.gather(*sent)
        finally:
            await producer.stop()

    async def count() -> int:
        return len([r async for r in read_topics(settings, [*names, "no-such-topic"])])

    asyncio.run(fill())
    assert [asyncio.run(count()) for _ in range(12)] == [39] * 12


def test_the_answered_ids_read_back_include_the_whole_last_batch(broker):
    """The read-back of a stage's answered ids (answered.KafkaTail) reads the tail of its output partition; the
    last batch of several records must come back whole, or its inputs are answered a second time."""
    import asyncio
    import uuid

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from scenestream.answered import KafkaTail
    from scenestream.backbone import start_producer

    settings = Settings(broker=broker.url)
    name = f"tail-{uuid.uuid4().hex[:6]}"

    async def go() -> tuple[list[bytes], list[bytes]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 1, 1)])
        finally:
            await admin.close()
        producer = await start_producer(settings)
        try:
            for k in range(4):
                await (await producer.send(name, value=b"single %d" % k))
            await asyncio.gather(*[await producer.send(name, value=b"batched %d" % k) for k in range(5)])
        finally:
            await producer.stop()
        tail = KafkaTail(settings)
        try:
            return await tail(name, 0, 100), await tail(name, 0, 3)
        finally:
            await tail.close()

    everything, last = asyncio.run(go())
    assert everything == [b"single %d" % k for k in range(4)] + [b"batched %d" % k for k in range(5)]
    assert last[-3:] == [b"batched 2", b"batched 3", b"batched 4"]


def test_a_worker_beats_through_one_producer_and_says_when_it_stops(broker, monkeypatch):
    """``heartbeat.beat``: a heartbeat every interval on the worker-status topic, all through one producer kept
    for the worker's life, and a last one marked ``stopping`` when the worker stops."""
    import asyncio
    import uuid
    from types import SimpleNamespace

    from scenestream import backbone
    from scenestream.client import read_topics
    from scenestream.heartbeat import beat
    from scenestream.schemas.codec import decode
    from scenestream.schemas.records import WorkerStatus
    from scenestream.topics import WORKER_STATUS, create_topics

    settings = Settings(broker=broker.url, topic_prefix=f"beat-{uuid.uuid4().hex[:6]}-", status_interval_s=0.2)
    started = []
    real_start = backbone.start_producer

    async def counting_start(*args, **kwargs):
        started.append(1)
        return await real_start(*args, **kwargs)

    monkeypatch.setattr(backbone, "start_producer", counting_start)
    tasks = []
    tp = SimpleNamespace
    app = SimpleNamespace(
        task=tasks.append, consumer=SimpleNamespace(assignment=lambda: [tp(topic="t-raw", partition=1)])
    )
    spec = SimpleNamespace(name="tokenizer", source=SimpleNamespace(full_name=lambda s: "t-raw"))
    runner = SimpleNamespace(spec=spec, handler=SimpleNamespace())
    beat(app, settings, [runner])
    (heartbeat,) = tasks

    async def go() -> list[WorkerStatus]:
        await create_topics(settings, [WORKER_STATUS])
        task = asyncio.create_task(heartbeat())
        await asyncio.sleep(1.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        topic = WORKER_STATUS.full_name(settings)
        return [decode(m.value, WorkerStatus) async for m in read_topics(settings, [topic])]

    statuses = asyncio.run(go())
    assert len(statuses) >= 4 and len(started) == 1
    assert all(s.stages == ["tokenizer"] and not s.stopping and s.assigned == {"t-raw": [1]} for s in statuses[:-1])
    assert statuses[-1].stopping and statuses[-1].assigned == {}
