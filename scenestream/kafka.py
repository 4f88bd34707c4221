"""Kafka readers without a consumer group (``tail``, ``trace``, ``ask``'s watcher, the answered-ids read-back,
the chaos observer): one place for how they are made."""

from __future__ import annotations

from typing import Any, Optional

from scenestream.settings import Settings


async def start_reader(settings: Settings, reset: str = "latest") -> Any:
    """A started ``AIOKafkaConsumer`` with no group and no commits; the caller assigns partitions. ``reset``
    ("earliest" or "latest") is where an assigned partition starts until the caller seeks: a caller that
    seeks to the beginning passes "earliest", since aiokafka's own reset may otherwise land after the seek."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset=reset,
        fetch_max_wait_ms=max(settings.fetch_max_wait_ms, 10),
        **settings.kafka_auth(),
    )
    await consumer.start()
    return consumer


async def partitions_of(consumer: Any, topic: str) -> Optional[set[int]]:
    """The partitions of ``topic``, asking the broker again when the consumer's metadata does not know it yet
    (a topic created a moment ago); None when it does not exist."""
    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    return partitions
