"""The backbone every stage plugs into: a thin faust agent around a pure transform.

A stage is declared as a :class:`StageSpec` (source topic, sink topics, and a
``build`` that returns its handler). :func:`attach` turns it into a faust
agent that

* reads raw bytes with acks switched off, and batches what is already waiting
  (no timer: a lone message goes through at once, a burst becomes a batch);
* decodes each value into the source schema; a value that does not decode, or
  that the transform refuses, becomes a :class:`DeadLetter` on
  ``<source>.dlq`` with the original bytes, stage, reason and offset;
* sends the results, waits until the broker confirmed every send (results and
  dead letters alike), and only then acks the batch. A send that failed on
  broker trouble is retried alone with back-off, the batch un-acked meanwhile,
  so nothing is lost and nothing is acked that was not handled. A send that can
  never succeed (over the size limit, no such topic, not authorized) puts its
  input on ``<source>.dlq`` instead, truncated when the whole dead letter is
  too large; when not even that can be sent the worker stops with
  :class:`StageStopped` rather than stall or lose the message.

A stage that streams (``StageSpec.streams``, the decoder) also gets an
``emit(topic, record)`` to send records while it still works on the batch:
they go out at once, keyed like the record's input message and queued before
the batch's results, and they are confirmed before the ack. Streamed records
are previews (the batch's results are the whole answers): one that fails to
send is logged, not retried, and after a retried batch they may repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional, Protocol, Sequence, TypeVar, Union

from scenestream.answered import Answered, KafkaTail, RecentIds, TailReader
from scenestream.schemas.codec import SchemaError, decode, encode
from scenestream.schemas.records import DeadLetter, Record
from scenestream.settings import Settings
from scenestream.topics import TopicDecl

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"

Emit = tuple[TopicDecl, Record]
# per input record: what to send, or the error that sends it to the DLQ
Result = Union[list[Emit], Exception]


class Handler(Protocol):
    """What a stage's ``build`` returns: the stage's transform behind the backbone."""

    def process(self, records: Sequence[Record]) -> list[Result]:
        """One result per record, in order. Must not raise for one bad record.
        A streaming stage's handler is called with ``emit=`` too (see module doc)."""

    def close(self) -> None:
        """Release what the handler itself holds when its worker stops (shared resources are the
        runtime's: :class:`Resources` closes them)."""


T = TypeVar("T")


class Resources:
    """What the stages of one worker share (the scene archive of the two memory agents, the decoder's
    engine): opened by the first stage that asks for it, owned by the runtime, closed once when the
    worker stops, the last opened first."""

    def __init__(self) -> None:
        self._open: dict[str, Any] = {}

    def shared(self, key: str, open_it: Callable[[], T]) -> T:
        """The resource named ``key``, opened by ``open_it`` the first time it is asked for."""
        if key not in self._open:
            self._open[key] = open_it()
        return self._open[key]

    def close(self) -> None:
        for key, resource in reversed(list(self._open.items())):
            try:
                resource.close()
            except Exception:  # one resource failing to close must not keep the others open
                log.exception("closing the shared %s failed", key)
        self._open.clear()


@dataclass(frozen=True)
class StageSpec:
    name: str  # stable: stage name on the command line and in dead letters
    agent: str  # stable: faust agent name, a verb after what it consumes
    source: TopicDecl
    sinks: tuple[TopicDecl, ...]
    build: Callable[[Settings, Resources], Handler]
    accepts: Callable[[Record], bool] = field(default=lambda record: True)
    in_thread: bool = False  # run the handler off the event loop (heavy CPU work)
    streams: bool = False  # the handler sends previews while it works: process(records, emit=...)
    # the records of sinks[0] that are this stage's answer to an input (read back to skip inputs answered before)
    answers: Callable[[Record], bool] = field(default=lambda record: True)
    # batches shrink to SCENESTREAM_BATCH_MAX_S of work; off for a stage whose batch is one engine call
    # that costs about as much for one message as for many (the decoder)
    time_bounded: bool = True
    # set: the stage works continuously (:class:`ContinuousRunner`) with at most this many inputs in flight
    continuous: Optional[int] = None
    # a topic of Cancel records (by message id) the stage obeys, read whole by every worker (continuous stages)
    control: Optional[TopicDecl] = None

    @classmethod
    def of(cls, agent: str, build: Callable[[Settings, Resources], Handler], **options: Any) -> StageSpec:
        """The spec of ``agent``, its stage and topics taken from the pipeline's topology table."""
        from scenestream.topology import ROUTES

        route = ROUTES[agent]
        return cls(name=route.stage, agent=route.agent, source=route.source, sinks=route.sinks, build=build, **options)


def producer(settings: Settings, **kwargs):
    """The aiokafka producer every stage and client sends with (one place for its settings)."""
    from aiokafka import AIOKafkaProducer

    acks: Any = "all" if settings.producer_acks == "all" else int(settings.producer_acks)
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        linger_ms=settings.producer_linger_ms,
        max_request_size=settings.max_request_bytes,
        acks=acks,
        enable_idempotence=settings.idempotent_producer,
        **settings.kafka_auth(),
        **kwargs,
    )


async def start_producer(settings: Settings, **kwargs: Any):
    """A started :func:`producer`; a broker that refuses idempotent producers gets one clear error."""
    from aiokafka.errors import UnsupportedVersionError

    started = producer(settings, **kwargs)
    try:
        await started.start()
    except UnsupportedVersionError as exc:
        await started.stop()
        raise RuntimeError(
            f"the broker at {settings.broker} does not support idempotent producers ({exc}): set "
            "SCENESTREAM_PRODUCER_IDEMPOTENCE=off (sends may then repeat on retries)"
        ) from exc
    return started


class Send(NamedTuple):
    """One record to send, and the input event it answers (for its dead letter when it cannot go)."""

    topic: str
    key: Optional[bytes]
    value: bytes
    event: Any = None


class StageStopped(RuntimeError):
    """A stage cannot go on without losing a message: not even its dead letter can be delivered."""


TRUNCATED_BYTES = 1024  # how much of the original value a truncated dead letter keeps


def is_permanent(exc: BaseException) -> bool:
    """Whether a failed send can never succeed by sending it again: a record over a size limit, an invalid
    record, a topic that does not exist (after the producer's metadata wait) or that this client may not
    write to, or an error that is not the broker's at all. Broker trouble (connections, timeouts, leaders
    moving) is retriable."""
    from aiokafka import errors as kafka

    permanent = (
        kafka.MessageSizeTooLargeError,
        kafka.RecordTooLargeError,
        kafka.RecordListTooLargeError,
        kafka.CorruptRecordException,
        kafka.InvalidTopicError,
        kafka.UnknownTopicOrPartitionError,
        kafka.TopicAuthorizationFailedError,
        kafka.ClusterAuthorizationFailedError,
    )
    if isinstance(exc, permanent):
        return True
    return not isinstance(exc, (kafka.KafkaError, OSError, asyncio.TimeoutError))


def truncated(letter: DeadLetter) -> DeadLetter:
    """``letter`` small enough to send: the first :data:`TRUNCATED_BYTES` of the original value, its size and
    SHA-256, and the reason."""
    value = letter.value or b""
    return letter.model_copy(
        update={
            "value": value[:TRUNCATED_BYTES],
            "truncated": True,
            "value_size": len(value),
            "value_sha256": hashlib.sha256(value).hexdigest(),
        }
    )


def map_each(fn: Callable[[Record], list[Emit]], records: Sequence[Record]) -> list[Result]:
    """Apply ``fn`` per record, turning one record's exception into that record's result."""
    results: list[Result] = []
    for record in records:
        try:
            results.append(fn(record))
        except Exception as exc:  # one bad record must not stop the stage
            results.append(exc)
    return results


def batch_then_each(fn: Callable[[Sequence[Record]], list[list[Emit]]], records: Sequence[Record]) -> list[Result]:
    """``fn`` on the whole batch (one engine call); if it raises, record by record, so that only
    the record that broke the batch gets its exception (and goes to the DLQ)."""
    try:
        return fn(records)
    except Exception as exc:
        if len(records) == 1:
            return [exc]
    results: list[Result] = []
    for record in records:
        try:
            results.append(fn([record])[0])
        except Exception as exc:
            results.append(exc)
    return results


def dead_letter(
    spec: StageSpec,
    event: Any,
    exc: BaseException,
    message_id: str | None = None,
    reason: str | None = None,
    error_type: str | None = None,
) -> DeadLetter:
    message = event.message
    if reason is not None:
        error_type = error_type or "processing"
    elif isinstance(exc, SchemaError):
        reason, error_type = exc.reason, exc.error_type
    else:
        reason, error_type = f"{type(exc).__name__}: {exc}", "processing"
    return DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        stage=spec.name,
        reason=reason,
        error_type=error_type,
        message_id=message_id,
    )


class Streamed:
    """The ``emit`` of a streaming handler for one batch; callable from the handler's thread."""

    def __init__(self, runner: StageRunner, loop: asyncio.AbstractEventLoop) -> None:
        self.runner = runner
        self.loop = loop
        self.keys: dict[Any, Any] = {}  # message id → key of its input message (filled by plan)
        self.queued: list[asyncio.Future] = []

    def __call__(self, decl: TopicDecl, record: Record) -> None:
        topic = self.runner.sinks[decl.name]
        key = self.keys.get(getattr(record, "message_id", None))
        value = encode(record)
        self.loop.call_soon_threadsafe(self._queue, topic, key, value)

    def _queue(self, topic: str, key: Any, value: bytes) -> None:
        send = self.runner.producer.send(topic, key=key, value=value, headers=self.runner.headers)
        self.queued.append(asyncio.ensure_future(send))

    def _delivered(self, outcomes: list[Any]) -> list[Any]:
        """The outcomes that are not failures; each failure is logged (previews are not retried)."""
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.warning("%s: a streamed record was not delivered: %s", self.runner.spec.name, outcome)
        return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]

    async def enqueued(self) -> list[Any]:
        """Wait until every streamed record is in the producer's queue (so results queue behind them)."""
        return self._delivered(await asyncio.gather(*self.queued, return_exceptions=True))

    async def confirm(self, deliveries: list[Any]) -> None:
        self._delivered(await asyncio.gather(*deliveries, return_exceptions=True))


class StageRunner:
    """Handles batches of faust events for one stage (see module doc).

    Results go out through a plain aiokafka producer: faust's ``Topic.send``
    path cost about a sixth of a hop's CPU in ``bench transport`` profiles.
    """

    def __init__(
        self,
        spec: StageSpec,
        settings: Settings,
        producer: Any = None,
        resources: Optional[Resources] = None,
        tail: Optional[TailReader] = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.handler = spec.build(settings, resources if resources is not None else Resources())
        self.sinks = {decl.name: decl.full_name(settings) for decl in spec.sinks}
        self.dlq = spec.source.dlq_name(settings)
        self.headers = [("x-stage", spec.name.encode()), ("x-worker", WORKER_ID.encode())]
        self.producer = producer
        self._own_producer = producer is None
        self.handled = 0
        self.dead = 0
        # batches handled and the seconds they took (a continuous stage: inputs, from admission to delivery)
        self.batches = 0
        self.batch_seconds = 0.0
        self.stopped: Optional[StageStopped] = None
        # one output per input: inputs answered before are skipped (scenestream/answered.py)
        self.answered = Answered(settings, spec.sinks[0], spec.answers) if settings.dedup_window else None
        self.tail = tail if tail is not None else KafkaTail(settings)
        # the partitions of a topic this worker's consumer holds now, None when unknown (attach() asks faust)
        self.assigned: Callable[[str], Optional[set[int]]] = lambda topic: None

    async def start(self) -> None:
        if self.producer is None:
            self.producer = await start_producer(self.settings)

    async def stop(self) -> None:
        if isinstance(self.tail, KafkaTail):
            await self.tail.close()
        if self._own_producer and self.producer is not None:
            await self.producer.stop()
            self.producer = None

    def close(self) -> None:
        """Release what the handler holds when its worker stops."""
        self.handler.close()

    def intake(self, event: Any) -> Union[Record, Exception, None]:
        """The input record of ``event`` for the handler; the error that dead-letters it; or None when the stage
        has nothing to do with it (not for this stage, or answered before)."""
        message = event.message
        answered = self.answered
        try:
            record = decode(message.value, self.spec.source.schema)
        except SchemaError as exc:
            if answered is not None:
                answered.first_time(message.partition, message.offset, None)
            return exc
        accepted = self.spec.accepts(record)
        if answered is not None and not answered.first_time(
            message.partition, message.offset, getattr(record, "message_id", None) if accepted else None
        ):
            log.info(
                "%s: %s[%s]@%s answered before (message %s): skipped",
                self.spec.name,
                message.topic,
                message.partition,
                message.offset,
                record.message_id,
            )
            return None
        return record if accepted else None  # not accepted: not for this stage (e.g. a resonated scene)

    def sends_for(self, event: Any, slot: Union[Record, Exception], result: Result) -> list[Send]:
        """What to send for one input: its results, or its dead letter."""
        if isinstance(result, Exception):
            letter = dead_letter(self.spec, event, result, getattr(slot, "message_id", None))
            self.dead += 1
            if not isinstance(result, SchemaError):
                log.warning(
                    "%s: %s at %s[%s]@%s",
                    self.spec.name,
                    result,
                    event.message.topic,
                    event.message.partition,
                    event.message.offset,
                )
            return [Send(self.dlq, event.message.key, encode(letter), event)]
        return [Send(self.sinks[decl.name], event.message.key, encode(record), event) for decl, record in result]

    def plan(self, events: Sequence[Any], emit: Optional[Streamed] = None) -> list[Send]:
        """What to send for these events, in input order."""
        records: list[Record] = []
        slots: list[tuple[Any, Union[Record, Exception, None]]] = []
        for event in events:
            slot = self.intake(event)
            slots.append((event, slot))
            if slot is not None and not isinstance(slot, Exception):
                records.append(slot)
                if emit is not None:
                    emit.keys[getattr(slot, "message_id", None)] = event.message.key
        if not records:
            outcome: list[Result] = []
        elif emit is not None:
            outcome = self.handler.process(records, emit=emit)
        else:
            outcome = self.handler.process(records)
        results = iter(outcome)
        sends: list[Send] = []
        for event, slot in slots:
            if slot is None:
                continue
            result: Result = slot if isinstance(slot, Exception) else next(results)
            sends += self.sends_for(event, slot, result)
        self.handled += len(events)
        return sends

    async def _send_each(self, sends: Sequence[Send]) -> list[Optional[BaseException]]:
        """Send every record (queued in order), then wait for each confirmation: ``None`` or its error."""
        queued: list[Any] = []
        for send in sends:
            try:
                queued.append(
                    await self.producer.send(send.topic, key=send.key, value=send.value, headers=self.headers)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused before it was queued (too large, no such topic, …)
                queued.append(exc)
        outcomes: list[Optional[BaseException]] = []
        for item in queued:
            if isinstance(item, BaseException):
                outcomes.append(item)
                continue
            try:
                await item
                outcomes.append(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _undeliverable(self, send: Send, exc: BaseException) -> Send:
        """What to send instead of ``send``, which can never be delivered (:func:`is_permanent`): its input's
        dead letter; for a dead letter, the truncated one. Raises :class:`StageStopped` when a truncated
        dead letter cannot be delivered either."""
        why = f"{type(exc).__name__}: {exc}"
        if send.topic == self.dlq:
            letter = decode(send.value, DeadLetter)
            if letter.truncated:
                raise StageStopped(
                    f"{self.spec.name}: the dead letter for {letter.topic}[{letter.partition}]@"
                    f"{letter.offset} cannot be delivered to {self.dlq} even truncated ({why}); "
                    "stopping instead of losing it"
                )
            log.warning(
                "%s: dead letter for %s[%s]@%s too large to send (%s): sending it truncated",
                self.spec.name,
                letter.topic,
                letter.partition,
                letter.offset,
                why,
            )
            return send._replace(value=encode(truncated(letter)))
        message = send.event.message
        log.warning(
            "%s: result for %s of %s[%s]@%s cannot be delivered (%s): dead-lettering the input",
            self.spec.name,
            send.topic,
            message.topic,
            message.partition,
            message.offset,
            why,
        )
        self.dead += 1
        letter = dead_letter(
            self.spec,
            send.event,
            exc,
            reason=f"result for {send.topic} cannot be delivered: {why}",
            error_type="undeliverable",
        )
        return Send(self.dlq, message.key, encode(letter), send.event)

    async def deliver(self, sends: Sequence[Send]) -> None:
        """Send every record and wait until the broker confirmed each one. A send that fails on broker trouble
        is retried alone (never the ones that went through), with back-off, until it goes; one that can never
        succeed puts its input on the dead-letter topic instead (a truncated dead letter where the whole one
        is over the size limit), once per input; when even that cannot be delivered, :class:`StageStopped`."""
        pending = list(sends)
        delay = 0.1
        while pending:
            outcomes = await self._send_each(pending)
            retry: list[Send] = []
            replaced: set[int] = set()  # inputs already dead-lettered in this round
            failures = 0
            for send, outcome in zip(pending, outcomes):
                if outcome is None:
                    continue
                if is_permanent(outcome):
                    if send.topic != self.dlq and id(send.event) in replaced:
                        continue
                    replaced.add(id(send.event))
                    retry.append(self._undeliverable(send, outcome))
                else:
                    failures += 1
                    last = outcome
                    retry.append(send)
            if failures:  # broker trouble: one line per round, not one per record
                log.error(
                    "%s: %d send(s) failed (%s: %s), retrying them in %.1fs",
                    self.spec.name,
                    failures,
                    type(last).__name__,
                    last,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            pending = retry

    async def handle(self, stream: Any, events: list[Any]) -> None:
        if self.answered is not None:
            stale = self.answered.stale(events)
            if stale:  # a fresh start, a rebalance or a rewind: read back what was answered there
                await self.answered.recover(stale, self.tail)
        emit = Streamed(self, asyncio.get_running_loop()) if self.spec.streams else None
        if self.spec.in_thread:
            sends = await asyncio.to_thread(self.plan, events, emit)
        else:
            sends = self.plan(events, emit)
        if emit is not None:
            await asyncio.sleep(0)  # run the queueing callbacks the handler's thread left behind
            deliveries = await emit.enqueued()
        held = self.assigned(events[0].message.topic) if events else None
        revoked = {e.message.partition for e in events} - held if held is not None else set()
        if revoked:  # a rebalance gave them to another worker while this batch ran: its results are that
            # worker's to send (it reads back what was answered when it starts on them); nothing here is acked
            log.info(
                "%s: partitions %s were revoked during the batch: their results are not sent",
                self.spec.name,
                sorted(revoked),
            )
            sends = [send for send in sends if send.event.message.partition not in revoked]
            events = [event for event in events if event.message.partition not in revoked]
        await self.deliver(sends)
        if emit is not None:
            await emit.confirm(deliveries)
        for event in events:
            await stream.ack(event)


class ContinuousHandler(Protocol):
    """What a continuous stage's ``build`` returns (the decoder in ``SCENESTREAM_DECODER_MODE=continuous``)."""

    def submit(self, record: Record, send: Optional[Callable[[Record], None]], done: Callable[[Result], None]) -> None:
        """Start on ``record`` and return at once; ``send`` (any thread) gets its previews, ``done`` (any thread,
        exactly once) its result. An error with ``stops_stage`` true is the handler's own failure, not the
        record's: the worker stops and the record is handled again elsewhere."""

    def cancel(self, message_id: str) -> None:
        """Stop working on ``message_id``: its ``done`` comes soon with a cancelled result."""

    def cancelled_result(self, record: Record) -> Result:
        """The result of a record whose message was cancelled before it was started."""

    def close(self) -> None: ...


class ContinuousRunner(StageRunner):
    """A stage that takes each input as it comes and sends each result when it is ready, out of order.

    At most ``spec.continuous`` inputs are in flight; while that many are, the source's partitions are paused
    (nothing more is fetched) until one is done. Each input is acknowledged when its result is delivered; the
    consumer commits a partition's offset only up to the first input not yet acknowledged (faust keeps the
    acknowledged offsets and commits the end of their unbroken run), so a crash loses nothing: every input
    not yet answered, and the ones after it, come again, and what was answered already is skipped
    (:mod:`~scenestream.answered`). Previews go out as the handler makes them, before their input's result.
    With ``spec.control``, every worker reads the whole control topic and cancels what it names."""

    def __init__(self, spec: StageSpec, settings: Settings, **kwargs: Any) -> None:
        super().__init__(spec, settings, **kwargs)
        self.most = spec.continuous or 1
        self.inflight: dict[str, Any] = {}  # message id → its input event
        self.again: dict[str, list[tuple[Any, Any]]] = {}  # message id in flight → (stream, event) of its redeliveries
        self.admitted_at: dict[str, float] = {}
        self.cancelled = RecentIds(max(1, settings.dedup_window))
        self.previews: dict[str, Any] = {}  # message id → the task queueing its latest preview
        self.tasks: set[asyncio.Task] = set()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.room: Optional[asyncio.Event] = None
        self.paused = False
        self.control_task: Optional[asyncio.Task] = None
        # set by attach(): pause (True) or resume (False) fetching the source's partitions; stop the worker
        self.pause: Callable[[bool], None] = lambda pause: None
        self.crash: Callable[[BaseException], Any] = lambda exc: None

    async def start(self) -> None:
        await super().start()
        self.loop = asyncio.get_running_loop()
        self.room = asyncio.Event()
        self.room.set()
        if self.spec.control is not None and self.control_task is None:
            self.control_task = asyncio.create_task(self._obey(self.spec.control))

    async def stop(self) -> None:
        for task in [self.control_task, *self.tasks]:
            if task is not None:
                task.cancel()
        self.control_task = None
        await super().stop()

    async def admit(self, stream: Any, event: Any) -> None:
        """Take one input: skip, dead-letter or answer at once what needs no work; else start it (waiting,
        fetching paused, while the stage is full)."""
        if self.answered is not None:
            stale = self.answered.stale([event])
            if stale:
                await self.answered.recover(stale, self.tail)
        slot = self.intake(event)
        self.handled += 1
        if slot is None:
            await stream.ack(event)
            return
        if isinstance(slot, Exception):
            await self.deliver(self.sends_for(event, slot, slot))
            await stream.ack(event)
            return
        message_id = getattr(slot, "message_id", None) or f"{event.message.partition}@{event.message.offset}"
        if message_id in self.cancelled:
            await self.deliver(self.sends_for(event, slot, self.handler.cancelled_result(slot)))
            await stream.ack(event)
            return
        if message_id in self.inflight:
            # the same message again while it is worked on (its partition came back to this worker after a
            # rebalance): one answer serves both copies, and both are acknowledged when it is delivered
            self.again.setdefault(message_id, []).append((stream, event))
            return
        while len(self.inflight) >= self.most:
            if not self.paused:
                self.paused = True
                self.pause(True)
            self.room.clear()
            await self.room.wait()
        if self.paused:
            self.paused = False
            self.pause(False)
        self.inflight[message_id] = event
        self.admitted_at[message_id] = time.perf_counter()
        loop = self.loop

        def send(record: Record) -> None:  # the handler's thread
            loop.call_soon_threadsafe(self._preview, event, message_id, record)

        def done(result: Result) -> None:  # the handler's thread
            loop.call_soon_threadsafe(self._done, stream, event, slot, message_id, result)

        self.handler.submit(slot, send if self.spec.streams else None, done)

    def _preview(self, event: Any, message_id: str, record: Record) -> None:
        topic = self.sinks[self.spec.sinks[0].name]
        task = asyncio.ensure_future(
            self.producer.send(topic, key=event.message.key, value=encode(record), headers=self.headers)
        )
        task.add_done_callback(self._previewed)
        self.previews[message_id] = task

    def _previewed(self, task: asyncio.Future) -> None:
        """Log a preview that was not queued or not delivered (previews are not retried)."""
        if task.cancelled():
            return
        failed = task.exception()
        if failed is not None:
            log.warning("%s: a streamed record was not delivered: %s", self.spec.name, failed)
        elif isinstance(task.result(), asyncio.Future):  # queued: now its delivery
            task.result().add_done_callback(self._previewed)

    def _done(self, stream: Any, event: Any, slot: Record, message_id: str, result: Result) -> None:
        task = asyncio.ensure_future(self._complete(stream, event, slot, message_id, result))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _complete(self, stream: Any, event: Any, slot: Record, message_id: str, result: Result) -> None:
        try:
            preview = self.previews.pop(message_id, None)
            if preview is not None:  # its previews are queued before the result
                await asyncio.wait([preview])
            if isinstance(result, Exception) and getattr(result, "stops_stage", False):
                raise StageStopped(f"{self.spec.name}: {result}; its unfinished inputs will be handled again")
            message = event.message
            held = self.assigned(message.topic)
            if held is not None and message.partition not in held:
                log.info(
                    "%s: %s[%s] was revoked while %s was worked on: its result is not sent",
                    self.spec.name,
                    message.topic,
                    message.partition,
                    message_id,
                )
                return
            await self.deliver(self.sends_for(event, slot, result))
            await stream.ack(event)
            for again_stream, again in self.again.pop(message_id, []):
                await again_stream.ack(again)
        except StageStopped as exc:
            self.stopped = exc
            log.critical("%s", exc)
            await self.crash(exc)
        finally:
            self.inflight.pop(message_id, None)
            self.again.pop(message_id, None)  # not delivered: its redeliveries come again too
            started = self.admitted_at.pop(message_id, None)
            if started is not None:
                self.batches += 1
                self.batch_seconds += time.perf_counter() - started
            self.room.set()

    def cancel(self, message_id: str) -> None:
        """Cancel ``message_id``: now, when it is in flight here; when it comes, otherwise."""
        self.cancelled.add(message_id)
        if message_id in self.inflight:
            log.info("%s: cancelling %s", self.spec.name, message_id)
            self.handler.cancel(message_id)

    async def _obey(self, control: TopicDecl) -> None:
        """Read the whole control topic (from its start: a cancel may come before its message) and cancel."""
        from aiokafka import TopicPartition

        from scenestream.kafka import partitions_of, start_reader

        topic = control.full_name(self.settings)
        consumer = await start_reader(self.settings, reset="earliest")
        try:
            partitions = await partitions_of(consumer, topic)
            if not partitions:
                log.warning("%s: no control topic %s: cancellation is off", self.spec.name, topic)
                return
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        try:
                            order = decode(record.value, control.schema)
                        except SchemaError as exc:
                            log.warning("%s: unreadable control record at offset %s: %s", topic, record.offset, exc)
                            continue
                        self.cancel(order.message_id)
        finally:
            await consumer.stop()


def _waiting(stream: Any) -> int:
    """How many messages are already queued for this stream (0 when unknown)."""
    try:
        return stream.channel.queue.qsize()
    except AttributeError:
        return 0


class BatchBound:
    """How many waiting messages a stage takes into one batch: at most ``most``, and, when ``seconds`` is set,
    only as many as it handles in that time (a moving average of its cost per message), so that a killed
    worker throws away at most about ``seconds`` of work and a batch's messages are acked that often."""

    def __init__(self, most: int, seconds: Optional[float]) -> None:
        self.most = most
        self.seconds = seconds
        self.per_message: Optional[float] = None
        self.limit = most

    def took(self, messages: int, elapsed: float) -> None:
        if self.seconds is None or messages == 0:
            return
        cost = elapsed / messages
        self.per_message = cost if self.per_message is None else 0.7 * self.per_message + 0.3 * cost
        self.limit = max(1, min(self.most, int(self.seconds / self.per_message) if self.per_message > 0 else self.most))


def attach(app: Any, spec: StageSpec, settings: Settings, resources: Optional[Resources] = None) -> StageRunner:
    """Register the stage's faust agent on ``app``; returns its runner."""
    if spec.continuous:
        runner: StageRunner = ContinuousRunner(spec, settings, resources=resources)
    else:
        runner = StageRunner(spec, settings, resources=resources)

    def assigned(topic: str) -> Optional[set[int]]:
        try:
            return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
        except Exception:  # no consumer yet (starting): nothing known, nothing revoked
            return None

    runner.assigned = assigned
    source_name = spec.source.full_name(settings)
    source = app.topic(source_name, value_type=bytes, key_type=bytes)
    bound = BatchBound(settings.batch_max, settings.batch_max_s if spec.time_bounded else None)

    async def continuous(stream: Any) -> None:
        manual = stream.noack()  # acks come from the runner, after delivery
        await runner.start()
        try:
            async for event in manual.events():
                await runner.admit(manual, event)
        except StageStopped as exc:
            runner.stopped = exc
            log.critical("%s", exc)
            await app.crash(exc)
        finally:
            await runner.stop()

    if isinstance(runner, ContinuousRunner):

        def pause(paused: bool) -> None:
            try:
                tps = {tp for tp in app.consumer.assignment() if tp.topic == source_name}
            except Exception:  # no consumer (stopping)
                return
            (app.consumer.pause_partitions if paused else app.consumer.resume_partitions)(tps)

        runner.pause = pause
        runner.crash = app.crash

    async def batches(stream: Any) -> None:
        batch: list[Any] = []
        manual = stream.noack()  # acks come from the runner, after delivery
        await runner.start()
        try:
            async for event in manual.events():
                batch.append(event)
                if len(batch) >= bound.limit or not _waiting(manual):
                    started = time.perf_counter()
                    await runner.handle(manual, batch)
                    elapsed = time.perf_counter() - started
                    bound.took(len(batch), elapsed)
                    runner.batches += 1
                    runner.batch_seconds += elapsed
                    log.debug("%s: %d events in %.1f ms", spec.name, len(batch), elapsed * 1000)
                    batch = []
        except StageStopped as exc:  # nothing acked; the worker stops loudly rather than lose or stall
            runner.stopped = exc
            log.critical("%s", exc)
            await app.crash(exc)
        finally:
            await runner.stop()

    agent = continuous if isinstance(runner, ContinuousRunner) else batches
    agent.__name__ = spec.agent
    agent.__qualname__ = spec.agent
    app.agent(source, name=spec.agent)(agent)
    return runner
