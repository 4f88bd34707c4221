"""Talking to a running stack: publish raw text, read topics, wait for a message's result."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable, Mapping, Optional, Sequence, Union

from scenestream.backbone import start_producer
from scenestream.kafka import partitions_of, start_reader
from scenestream.schemas.codec import SchemaError, decode, encode, unpack
from scenestream.schemas.records import Cancel, GenerationParams, RawText, Record, new_message_id
from scenestream.settings import Settings
from scenestream.topics import CONTROL, RAW_TEXT, TopicDecl

Accept = Callable[[Record], bool]


class TextRefused(ValueError):
    """A text that is not published because the tokenizer stage would refuse it (over the size limit)."""


def check_size(text: str, settings: Settings) -> None:
    """Refuse a text over ``SCENESTREAM_MAX_TEXT_BYTES`` before it is published (the tokenizer stage would
    dead-letter it; one too large for the producer would not even be sent)."""
    from scenestream.agents.tokenizer.transform import InputError
    from scenestream.agents.tokenizer.transform import check_size as tokenizer_check_size

    try:
        tokenizer_check_size(text, settings.max_text_bytes)
    except InputError as exc:
        raise TextRefused(f"{exc.reason} (SCENESTREAM_MAX_TEXT_BYTES): not published") from None


def raw_text(
    text: str,
    session_id: Optional[str] = None,
    tenant: str = "default",
    source: str = "api",
    register: Optional[str] = None,
    params: Optional[GenerationParams] = None,
) -> RawText:
    """A new message: its own id, the session (a new one when not given), an optional forced register and
    generation parameters (:class:`GenerationParams`; unset fields take the decoder's settings)."""
    message_id = new_message_id()
    return RawText(
        message_id=message_id,
        session_id=session_id or f"s-{message_id}",
        text=text,
        tenant=tenant,
        source=source,
        force_register=register,
        params=params if params is not None and params.model_dump(exclude_defaults=True) else None,
    )


async def produce(settings: Settings, decl: TopicDecl, records: Sequence[Record]) -> None:
    """Send ``records`` to ``decl``'s topic, each keyed by its ``decl.key`` field, and wait until all are
    confirmed."""
    prod = await start_producer(settings)
    try:
        await send_with(prod, settings, decl, records)
    finally:
        await prod.stop()


async def send_with(prod: Any, settings: Settings, decl: TopicDecl, records: Sequence[Record]) -> None:
    """Send ``records`` to ``decl``'s topic through the started producer ``prod``, each keyed by its
    ``decl.key`` field, and wait until all are confirmed."""
    topic = decl.full_name(settings)
    futures = [await prod.send(topic, key=getattr(r, decl.key).encode(), value=encode(r)) for r in records]
    await asyncio.gather(*futures)


async def publish(settings: Settings, records: list[RawText]) -> None:
    await produce(settings, RAW_TEXT, records)


async def publish_paced(
    settings: Settings, records: Sequence[RawText], rate: float, sent: dict[str, float], stamp: bool = False
) -> None:
    """Publish ``records`` one by one at ``rate`` per second from now, each one's wall-clock send time in
    ``sent`` (by message id) as it goes; with ``stamp`` each record's ``ts_ms`` is that time."""
    start = time.time()
    for i, record in enumerate(records):
        delay = start + i / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[record.message_id] = time.time()
        if stamp:
            record = record.model_copy(update={"ts_ms": int(sent[record.message_id] * 1000)})
        await publish(settings, [record])


async def cancel(settings: Settings, message_id: str, tenant: str = "default", reason: str = "cancelled") -> None:
    """Ask the decoders to stop generating ``message_id``'s answer (a :class:`Cancel` on the control topic): the
    one that holds it aborts it and sends a final lora-output marked cancelled."""
    await produce(settings, CONTROL, [Cancel(message_id=message_id, tenant=tenant, reason=reason)])


async def read_topics(
    settings: Settings,
    topics: Sequence[str],
    from_beginning: bool = True,
    follow: bool = False,
    stall_timeout: float = 30.0,
    missing_ok: bool = True,
) -> AsyncIterator[object]:
    """Every message of ``topics`` (all partitions, one consumer, no group), as aiokafka records: without
    ``follow``, at least up to each partition's end as it was when reading began (a ``TimeoutError`` when the
    broker hands out nothing for ``stall_timeout`` seconds before that), whole fetched batches, so possibly a
    few records written since; with ``follow``, and then whatever comes. (The embedded Tansu reports a
    partition's end as its last batch's first offset + 1, so cutting at the end would drop the rest of that
    batch; it is read whole.)
    A topic that does not exist is skipped, or a ``KeyError`` without ``missing_ok``."""
    from aiokafka import TopicPartition

    # the reset policy agrees with the seek: aiokafka's own reset at assign() (to its default, the end) can
    # land after seek_to_beginning() and win, and then the reader starts at the end
    consumer = await start_reader(settings, reset="earliest" if from_beginning else "latest")
    try:
        tps = []
        for topic in topics:
            partitions = await partitions_of(consumer, topic)
            if not partitions and not missing_ok:
                raise KeyError(f"topic {topic!r} does not exist on {settings.broker}")
            tps += [TopicPartition(topic, p) for p in sorted(partitions or ())]
        if not tps:
            return
        consumer.assign(tps)
        ends = None if follow else await consumer.end_offsets(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        last = time.monotonic()
        while True:
            if ends is not None:
                left = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
                if not left:
                    return
                if time.monotonic() - last > stall_timeout:
                    raise TimeoutError(f"{', '.join(topics)}: nothing read for {stall_timeout:.0f}s before the end")
            batch = await consumer.getmany(timeout_ms=200)
            if batch:
                last = time.monotonic()
                for records in batch.values():
                    for record in records:  # (no cut at the end offset: see the docstring)
                        yield record
    finally:
        await consumer.stop()


async def read_topic(
    settings: Settings,
    topic: str,
    from_beginning: bool = True,
    follow: bool = False,
    stall_timeout: float = 30.0,
) -> AsyncIterator[object]:
    """Every message of ``topic``, as :func:`read_topics` reads them; a ``KeyError`` when it does not exist."""
    async for record in read_topics(settings, [topic], from_beginning, follow, stall_timeout, missing_ok=False):
        yield record


def view(record, schema: type[Record]) -> dict:
    """A topic record as a JSON-able dict: the decoded record, or why it does not decode."""
    head = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "timestamp_ms": record.timestamp,
    }
    try:
        head["value"] = decode(record.value, schema).model_dump(mode="python", exclude_none=True)
    except SchemaError as exc:
        try:
            head["value"] = unpack(record.value)
        except SchemaError:
            head["value"] = record.value
        head["error"] = exc.reason
    return head


class DeadLettered(RuntimeError):
    """The pipeline refused the message; the reason comes from the dead letter."""


class Watcher:
    """Watches result topics and every DLQ for message ids; start it before publishing.

    ``topics`` maps topic name → record class; :meth:`wait` returns, for one
    message id, the records of every watched topic seen by the time the one on
    ``until`` arrived, keyed by record kind (``scene``, ``lora_output`` …).

    Streamed records (partial lora-outputs, ``final`` false) are not results:
    they go to ``on_partial`` as they arrive, and the wall-clock time the
    first one of each message arrived is kept in :attr:`first_partial`.
    """

    def __init__(
        self,
        settings: Settings,
        topics: dict[str, type[Record]],
        dlqs: list[str],
        on_partial: Optional[Callable[[Record], None]] = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.dlqs = set(dlqs)
        self.on_partial = on_partial
        self.consumer = None
        self.seen: dict[str, dict[str, list[Record]]] = {}
        self.first_partial: dict[str, float] = {}

    async def start(self) -> None:
        from aiokafka import TopicPartition

        self.consumer = await start_reader(self.settings)
        await self.consumer._client.force_metadata_update()  # every topic of the stack, created a moment ago
        tps = [
            TopicPartition(t, p)
            for t in [*self.topics, *self.dlqs]
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before anything is published
            await self.consumer.position(tp)

    def _note(self, record) -> None:
        from scenestream.schemas.records import DeadLetter

        schema = DeadLetter if record.topic in self.dlqs else self.topics[record.topic]
        try:
            item = decode(record.value, schema)
        except SchemaError:
            return
        mid = getattr(item, "message_id", None)
        if getattr(item, "final", True) is False:
            if mid is not None:
                self.first_partial.setdefault(mid, time.time())
            if self.on_partial is not None:
                self.on_partial(item)
            return
        if mid is not None:
            key = "dead_letter" if isinstance(item, DeadLetter) else record.topic
            self.seen.setdefault(mid, {}).setdefault(key, []).append(item)

    async def wait(
        self,
        message_id: str,
        until: Union[str, Mapping[str, Optional[Accept]]],
        timeout: float,
        accept: Optional[Accept] = None,
    ) -> dict[str, Record]:
        """Records for ``message_id`` by kind, once every topic in ``until`` has one its test accepts.

        ``until`` is one topic (tested by ``accept``) or a mapping topic → test
        (``None`` accepts anything); wait for everything a caller needs in one
        call, since the records of a message are handed out once. Per topic the
        result is the first accepted record (for ``until`` topics: a later final
        answer of the same message is a duplicate) or the latest record (a
        resonated scene after the formed one). A dead letter raises.
        """
        tests = {until: accept} if isinstance(until, str) else dict(until)
        deadline = time.monotonic() + timeout
        while True:
            got = self.seen.get(message_id, {})
            if "dead_letter" in got:
                item = got["dead_letter"][-1]
                raise DeadLettered(f"{item.stage} refused the message ({item.error_type}): {item.reason}")
            chosen = {
                topic: [item for item in got.get(topic, ()) if test is None or test(item)]
                for topic, test in tests.items()
            }
            if all(chosen.values()):
                found = {topic: items[-1] for topic, items in self.seen.pop(message_id).items()}
                # the first accepted: a second final answer for a message (re-answered after a crash) is a duplicate
                found.update({topic: items[0] for topic, items in chosen.items()})
                return {self.topics[topic].kind: item for topic, item in found.items()}
            if time.monotonic() > deadline:
                missing = ", ".join(topic for topic, items in chosen.items() if not items)
                raise TimeoutError(f"no result on {missing} for message {message_id} within {timeout:.0f}s")
            batch = await self.consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    self._note(record)

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
