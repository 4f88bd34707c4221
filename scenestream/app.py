"""The one faust app every stage plugs into.

Created once by :func:`create_app`; agents and topics take it as an argument
and never create their own (faust ``examples/fastapi_project`` style).

Two things differ from a default faust app, both measured on the embedded
broker (``scenestream bench transport``; the README's transport benchmark):

* faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Tansu holds a
  fetch that covers an idle partition until that wait runs out, so every hop
  waited up to 1.5 s. :class:`Transport` below sets it from
  ``SCENESTREAM_FETCH_MAX_WAIT_MS`` instead (10 ms by default).
* acks: ``stream_ack_exceptions`` is off, so a message whose handling raised is
  never committed; the backbone (:mod:`scenestream.backbone`) sends what it
  cannot handle to the dead-letter topic and acks only after that send is
  confirmed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from scenestream.settings import Settings

# what _Consumer._drain_messages is adapted from: (distribution, version, function, SHA-256 of its source)
ADAPTED_FROM = (
    "faust-streaming",
    "0.15.3",
    "faust.transport.consumer.Consumer._drain_messages",
    "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417",
)


class RateLimited(logging.Filter):
    """Lets the first record of each kind (logger, level, message) through, then at most one per ``window_s``,
    saying how many like it were held back: a worker whose broker is gone logs a few lines, not thousands."""

    def __init__(self, window_s: float = 10.0) -> None:
        super().__init__()
        self.window_s = window_s
        self.last: dict[tuple, float] = {}
        self.held: dict[tuple, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        last = self.last.get(key)
        if last is not None and now - last < self.window_s:
            self.held[key] = self.held.get(key, 0) + 1
            return False
        if len(self.last) > 10_000:  # bounded: forget the oldest kinds
            self.last.clear()
        self.last[key] = now
        held = self.held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.window_s:.0f} s)"
        return True


def configure_logging(settings: Settings) -> None:
    """A worker's log: stderr at ``SCENESTREAM_LOG_LEVEL``, every handler rate-limited (:class:`RateLimited`)."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RateLimited) for f in handler.filters):
            handler.addFilter(RateLimited())


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any):
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when start() builds its fetcher
        consumer._fetch_max_wait_ms = self.app.conf.scenestream.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the worker's inner loop
        """faust's drain loop, less its per-message ``wait_first``.

        Adapted from faust-streaming 0.15.3, ``faust.transport.consumer.Consumer._drain_messages``
        (:data:`ADAPTED_FROM`; ``tests/unit/test_app.py`` fails when the installed faust or that
        function's source changes, so the copy is re-read against it).

        faust hands every fetched message to the conductor through
        ``wait_first(callback(message), suspend_flow.wait())``, which creates
        two tasks and an ``asyncio.wait`` per message: the largest single cost
        of a hop in ``bench transport`` profiles. Here the callback is awaited
        directly while the flow runs; when a rebalance suspends the flow, the
        rest of the fetched batch waits for it as faust's loop does.
        """
        callback = self.callback
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspend_flow = self.suspend_flow
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(faust_consumer.CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    break
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if suspend_flow.is_set():
                            await self.wait_first(callback(message), suspend_flow.wait())
                        else:
                            await callback(message)
                        set_read_offset(tp, offset)
                self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the fetch wait taken from settings."""

    Consumer = _Consumer


class App(faust.App):
    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)


def _faust_credentials(settings: Settings):
    if settings.security_protocol == "PLAINTEXT":
        return None
    ssl_context = settings.kafka_auth().get("ssl_context")
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=settings.sasl_mechanism or "PLAIN",
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


def create_app(settings: Settings, name: str | None = None) -> App:
    """The faust app for ``settings`` (which must carry a broker address)."""
    if not settings.broker:
        raise RuntimeError("create_app needs settings with a broker address")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = App(
        name or settings.app_id,
        broker=settings.broker,
        broker_credentials=_faust_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=10_000,
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        # static membership: a worker restarted under the same name takes its partitions back without a rebalance
        consumer_group_instance_id=f"{settings.app_id}-{settings.worker_name}" if settings.worker_name else None,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        producer_linger_ms=settings.producer_linger_ms,
        stream_ack_exceptions=False,
        stream_wait_empty=False,
        stream_buffer_maxsize=max(4096, settings.batch_max * 4),
        consumer_auto_offset_reset="earliest",
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        logging_config=None,
        loghandlers=[],
    )
    app.conf.scenestream = settings  # type: ignore[attr-defined]
    logging.getLogger("faust").setLevel(settings.log_level)
    return app
