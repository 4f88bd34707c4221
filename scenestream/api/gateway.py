"""One reader of the result topics per process, handing each record to the request waiting for it.

A request registers its message id (:meth:`Dispatcher.open`) before its raw text is published; the
gateway's one consumer (no group: every ``serve`` process reads every partition and keeps the records of
its own requests) reads ``scenes``, ``lora-outputs`` and the dead-letter topics, and :meth:`Dispatcher.note`
puts each record of a waiting message on that request's queue as an event (it also reads the workers'
heartbeats on ``worker-status``, from a little before its start, for ``/readyz``):

* ``("scene", Scene)``: the scene the decoder answers (the resonated one when memory is on), once, before
  any piece of the answer (pieces that come first wait for it);
* ``("delta", LoraOutput)``: a streamed piece (``final`` false; a piece seen before is dropped);
* ``("final", LoraOutput)``: the answer; a second final record of the message is a duplicate and ignored;
* ``("cancelled", LoraOutput)``: the decoder stopped the message (not an answer);
* ``("error", DeadLetter)``: a stage refused the message.

More requests waiting than ``SCENESTREAM_API_MAX_PENDING`` are refused (:class:`Busy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from scenestream.heartbeat import Heard
from scenestream.schemas.codec import SchemaError, decode, encode
from scenestream.schemas.records import DeadLetter, LoraOutput, RawText, Record, Scene, WorkerStatus
from scenestream.settings import Settings
from scenestream.topics import LORA_OUTPUTS, PIPELINE, RAW_TEXT, SCENES, WORKER_STATUS

log = logging.getLogger(__name__)
HEARTBEATS_BACK = 256  # worker-status records read from before the gateway's start


class Busy(RuntimeError):
    """Too many requests are waiting in this process."""


@dataclass
class Pending:
    """One request waiting for its message's records."""

    message_id: str
    session_id: str
    tenant: str
    wanted_stage: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    started: float = field(default_factory=time.perf_counter)
    scene: Optional[Scene] = None  # the scene handed out
    fallback: Optional[Scene] = None  # a scene of another stage (formed, when memory is on), for the final
    held: list = field(default_factory=list)  # pieces that came before the scene
    next_seq: int = 0
    finished: bool = False

    def _put(self, kind: str, item: Any) -> None:
        self.queue.put_nowait((kind, item))

    def note(self, item: Record) -> None:
        if self.finished:
            return  # a duplicate final, or a piece after the answer: the first final answered
        if isinstance(item, DeadLetter):
            self.finished = True
            self._put("error", item)
        elif isinstance(item, Scene):
            if self.scene is not None:
                return
            if item.stage == self.wanted_stage:
                self.scene = item
                self._put("scene", item)
                for piece in self.held:
                    self._piece(piece)
                self.held.clear()
            else:
                self.fallback = item
        elif isinstance(item, LoraOutput):
            if item.final:
                if self.scene is None and (self.fallback is not None):
                    self.scene = self.fallback
                    self._put("scene", self.fallback)
                self.held.clear()  # the final holds the whole text
                self.finished = True
                self._put("cancelled" if item.cancelled else "final", item)
            elif self.scene is None:
                self.held.append(item)
            else:
                self._piece(item)

    def _piece(self, piece: LoraOutput) -> None:
        if piece.seq < self.next_seq:
            return  # sent again (a decoder restarted): already handed out
        self.next_seq = piece.seq + 1
        self._put("delta", piece)

    async def next(self, deadline: float) -> tuple[str, Any]:
        """The next event, or TimeoutError at ``deadline`` (a ``time.monotonic()`` value)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return await asyncio.wait_for(self.queue.get(), timeout=left)


class Dispatcher:
    """Message id → the request waiting for it (see the module doc)."""

    def __init__(self, max_pending: int, memory: bool) -> None:
        self.max_pending = max_pending
        self.wanted_stage = "resonated" if memory else "formed"
        self.pending: dict[str, Pending] = {}

    def open(self, message_id: str, session_id: str, tenant: str) -> Pending:
        if len(self.pending) >= self.max_pending:
            raise Busy(f"{len(self.pending)} requests are waiting (SCENESTREAM_API_MAX_PENDING={self.max_pending})")
        waiting = Pending(message_id, session_id, tenant, self.wanted_stage)
        self.pending[message_id] = waiting
        return waiting

    def close(self, message_id: str) -> None:
        self.pending.pop(message_id, None)

    def note(self, item: Record) -> bool:
        """Hand a decoded record to the request of its message id; False when none waits for it."""
        message_id = getattr(item, "message_id", None)
        waiting = self.pending.get(message_id) if message_id else None
        if waiting is None:
            return False
        if getattr(item, "tenant", waiting.tenant) != waiting.tenant:
            return False  # never another tenant's record, even under a colliding id
        waiting.note(item)
        return True


def result_topics(settings: Settings) -> dict[str, type[Record]]:
    """The topics the gateway reads: scenes, lora-outputs and every dead-letter topic, with their records."""
    topics: dict[str, type[Record]] = {
        SCENES.full_name(settings): Scene,
        LORA_OUTPUTS.full_name(settings): LoraOutput,
    }
    for decl in PIPELINE:
        if decl.has_dlq:
            topics[decl.dlq_name(settings)] = DeadLetter
    return topics


class Gateway:
    """The dispatcher fed by one group-less consumer of :func:`result_topics`, and one producer."""

    def __init__(self, settings: Settings, on_record: Optional[Callable[[Record], None]] = None) -> None:
        self.settings = settings
        self.on_record = on_record  # every decoded record read, whoever waits for it (the stages' timings)
        self.dispatcher = Dispatcher(settings.api_max_pending, settings.memory)
        self.topics = result_topics(settings)
        self.status_topic = WORKER_STATUS.full_name(settings)
        self.heard = Heard()  # the workers' latest heartbeats
        self.partitions: dict[str, set[int]] = {}  # every topic's partitions, as the broker said last
        self.consumer: Any = None
        self.producer: Any = None
        self._pump: Optional[asyncio.Task] = None
        self.read = 0
        self.failure: Optional[BaseException] = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        from scenestream.backbone import start_producer
        from scenestream.kafka import start_reader
        from scenestream.topics import create_topics

        await create_topics(self.settings)  # a gateway may be the first process on a new cluster
        self.producer = await start_producer(self.settings)
        self.consumer = await start_reader(self.settings)
        await self.consumer._client.force_metadata_update()
        tps = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        missing = {t for t in self.topics if not self.consumer.partitions_for_topic(t)}
        if missing:
            raise RuntimeError(f"the result topics {sorted(missing)} do not exist on {self.settings.broker}")
        statuses = [
            TopicPartition(self.status_topic, p) for p in self.consumer.partitions_for_topic(self.status_topic) or ()
        ]
        self.consumer.assign(tps + statuses)
        await self.consumer.seek_to_end(*tps, *statuses)
        for tp in tps:  # the end offsets now, before any request is published
            await self.consumer.position(tp)
        for tp in statuses:  # the heartbeats of the last few intervals: every live worker's latest is there
            self.consumer.seek(tp, max(0, await self.consumer.position(tp) - HEARTBEATS_BACK))
        await self.refresh_partitions()
        self._pump = asyncio.create_task(self._read(), name="scenestream-gateway-reader")

    async def refresh_partitions(self) -> None:
        """Ask the broker for every topic's partitions now (the stages' sources too, which this reader does
        not read: the consumer's own metadata covers only what it reads)."""
        metadata = await self.consumer._client.fetch_all_metadata()
        self.partitions = {topic: set(metadata.partitions_for_topic(topic) or ()) for topic in metadata.topics()}

    @property
    def alive(self) -> bool:
        return self._pump is not None and not self._pump.done()

    async def _read(self) -> None:
        try:
            while True:
                batch = await self.consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    for record in records:
                        self.read += 1
                        if record.topic == self.status_topic:
                            self._heartbeat(record.value)
                            continue
                        schema = self.topics.get(record.topic)
                        if schema is None:
                            continue
                        try:
                            item = decode(record.value, schema)
                        except SchemaError:
                            continue  # not ours to judge: the stages dead-letter what they cannot read
                        self.dispatcher.note(item)
                        if self.on_record is not None:
                            self.on_record(item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the reader is gone: readiness says so, waiting requests time out
            self.failure = exc
            log.exception("the gateway's reader of the result topics stopped")
            raise

    def _heartbeat(self, value: bytes) -> None:
        try:
            self.heard.note(decode(value, WorkerStatus))
        except SchemaError as exc:
            log.warning("an unreadable worker heartbeat skipped: %s", exc)

    async def publish(self, record: RawText) -> None:
        topic = RAW_TEXT.full_name(self.settings)
        await (await self.producer.send(topic, key=record.session_id.encode(), value=encode(record)))

    async def publish_scene(self, scene: Scene) -> None:
        """A scene straight to the decoder (a replay of an archived scene)."""
        topic = SCENES.full_name(self.settings)
        await (await self.producer.send(topic, key=scene.session_id.encode(), value=encode(scene)))

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        for client in (self.consumer, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
