"""What a stage has already answered: one output per input, even when an input comes twice.

An input comes twice when a worker is killed after its results were delivered
and before its offsets were committed (the next owner of the partition reads
them again), or when a producer upstream wrote it twice. Either way the
stage's result for it is already on the stage's output topic. So each stage
remembers, per input partition, the message ids it answered recently, and
skips an input whose message id it has answered (acking it, sending nothing).

The memory is bounded (``SCENESTREAM_DEDUP_WINDOW`` ids per partition) and
recoverable: when a partition's offsets are not the continuation of what this
worker last read there (a fresh start, a rebalance, a rewind after a crash),
the ids are read back from the tail of the output topic: the records there
that answer an input (:attr:`StageSpec.answers`) name its message id. Kafka
transactions would give the same guarantee without the read; the embedded
Tansu broker does not grant a producer id (``InitProducerId`` answers with an
unknown error), so this works on every broker.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Optional

from scenestream.kafka import partitions_of, start_reader
from scenestream.schemas.codec import SchemaError, decode
from scenestream.schemas.records import Record
from scenestream.settings import Settings
from scenestream.topics import TopicDecl

log = logging.getLogger(__name__)


class RecentIds:
    """A bounded, insertion-ordered set of message ids."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: str) -> bool:
        return message_id in self.ids

    def add(self, message_id: str) -> None:
        self.ids[message_id] = None
        self.ids.move_to_end(message_id)
        while len(self.ids) > self.most:
            self.ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self.ids)


class Answered:
    """Per input partition: the ids answered, and the next offset that continues what was read."""

    def __init__(self, settings: Settings, output: TopicDecl, answers: Callable[[Record], bool]) -> None:
        self.settings = settings
        self.output = output
        self.answers = answers
        self.window = settings.dedup_window
        self.partitions: dict[int, RecentIds] = {}
        self.next_offset: dict[int, int] = {}
        self.skipped = 0
        self.recoveries = 0

    def stale(self, events: Iterable[Any]) -> set[int]:
        """The partitions of ``events`` whose memory must be read back before they are handled."""
        stale: set[int] = set()
        expected = dict(self.next_offset)
        for event in events:
            partition, offset = event.message.partition, event.message.offset
            if partition not in self.partitions or expected.get(partition) != offset:
                stale.add(partition)
            expected[partition] = offset + 1
        return stale

    async def recover(self, partitions: set[int], read_tail: TailReader) -> None:
        for partition in sorted(partitions):
            started = time.perf_counter()
            ids = RecentIds(self.window)
            for record in await read_tail(self.output.full_name(self.settings), partition, self.window):
                try:
                    answer = decode(record, self.output.schema)
                except SchemaError:
                    continue
                if self.answers(answer):
                    ids.add(answer.message_id)
            self.partitions[partition] = ids
            self.next_offset.pop(partition, None)
            self.recoveries += 1
            log.info(
                "%s[%d]: %d answered ids read back in %.0f ms",
                self.output.name,
                partition,
                len(ids),
                (time.perf_counter() - started) * 1000,
            )

    def first_time(self, partition: int, offset: int, message_id: Optional[str]) -> bool:
        """Note the input at ``partition``/``offset``; False when its message id was answered already."""
        self.next_offset[partition] = offset + 1
        if message_id is None:
            return True
        ids = self.partitions.setdefault(partition, RecentIds(self.window))
        if message_id in ids:
            self.skipped += 1
            return False
        ids.add(message_id)
        return True


TailReader = Callable[[str, int, int], Any]  # (topic, partition, most) → awaitable list of values


class KafkaTail:
    """Reads the last records of a topic partition (no consumer group)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: Any = None

    async def __call__(self, topic: str, partition: int, most: int) -> list[bytes]:
        from aiokafka import TopicPartition

        if self.consumer is None:
            self.consumer = await start_reader(self.settings)
        tp = TopicPartition(topic, partition)
        if partition not in (await partitions_of(self.consumer, topic) or set()):
            return []  # an output topic with fewer partitions: nothing of this partition to read back
        self.consumer.assign([tp])
        end = (await self.consumer.end_offsets([tp]))[tp]
        start = max(0, end - most)
        if end == start:
            return []
        self.consumer.seek(tp, start)
        values: list[bytes] = []
        position = start
        while position < end:
            batch = await self.consumer.getmany(tp, timeout_ms=500)
            records = batch.get(tp, [])
            if not records:
                position = await self.consumer.position(tp)
                if position >= end:
                    break
                continue
            # whole fetched batches, no cut at ``end``: the embedded Tansu reports a partition's end as its last
            # batch's first offset + 1, and a cut there forgot the rest of that batch's answers (answered again)
            values += [r.value for r in records]
            position = records[-1].offset + 1
        return values

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
