"""Every topic declared once: name, key, partitions, retention, value schema, DLQ.

Created from here on the embedded broker (by ``scenestream run`` / ``ask``)
and on a real cluster (``scenestream topics create``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Optional

from scenestream.schemas.records import (
    Cancel,
    DeadLetter,
    DecoderStatus,
    LoraOutput,
    MemoryEvent,
    RawText,
    Record,
    RegisterChange,
    Scene,
    Tokens,
    WorkerStatus,
)
from scenestream.settings import Settings

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicDecl:
    """One topic of the pipeline. ``name`` is stable; the prefix comes from settings."""

    name: str
    schema: type[Record]
    key: str = "session_id"
    partitions: Optional[int] = None  # None: settings.partitions
    retention_hours: Optional[int] = None  # None: settings.retention_hours
    compacted: bool = False
    has_dlq: bool = True
    doc: str = ""

    def full_name(self, settings: Settings) -> str:
        return f"{settings.topic_prefix}{self.name}"

    def dlq_name(self, settings: Settings) -> str:
        return f"{self.full_name(settings)}.dlq"

    def config(self, settings: Settings) -> dict[str, str]:
        hours = self.retention_hours or settings.retention_hours
        return {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(hours * HOUR_MS),
        }


RAW_TEXT = TopicDecl("raw-text", RawText, doc="texts as ingested (ask / API / ingest)")
TOKENS = TopicDecl("tokens", Tokens, doc="SentencePiece pieces, hypertokens, symbols")
SCENES = TopicDecl("scenes", Scene, doc="formed scenes (builder) and resonated scenes (memory)")
LORA_OUTPUTS = TopicDecl("lora-outputs", LoraOutput, doc="answers of the register adapters")
MEMORY_EVENTS = TopicDecl(
    "memory-events", MemoryEvent, retention_hours=24 * 30, doc="what memory stored, recalled, linked (audit)"
)

CONTROL = TopicDecl(
    "control",
    Cancel,
    key="message_id",
    partitions=1,
    retention_hours=1,
    has_dlq=False,
    doc="cancel records by message id (every decoder reads all of it; an hour is long enough for any answer)",
)

REGISTER_CHANGES = TopicDecl(
    "registers",
    RegisterChange,
    key="name",
    partitions=1,
    retention_hours=24 * 365,
    compacted=True,
    has_dlq=False,
    doc="register catalogue changes by name (`scenestream register publish|remove`; read whole by every decoder "
    "and scene builder, the latest change of each register kept)",
)
DECODER_STATUS = TopicDecl(
    "decoder-status",
    DecoderStatus,
    key="worker",
    partitions=1,
    retention_hours=24 * 365,
    compacted=True,
    has_dlq=False,
    doc="the adapters each decoder worker serves, by worker (the latest of each kept; `scenestream register list`)",
)
WORKER_STATUS = TopicDecl(
    "worker-status",
    WorkerStatus,
    key="worker",
    partitions=1,
    retention_hours=1,
    has_dlq=False,
    doc="every worker's heartbeat: its stages, the partitions it holds, its engine (a gateway's `/readyz` reads it)",
)
PIPELINE: tuple[TopicDecl, ...] = (
    RAW_TEXT,
    TOKENS,
    SCENES,
    LORA_OUTPUTS,
    MEMORY_EVENTS,
    CONTROL,
    REGISTER_CHANGES,
    DECODER_STATUS,
    WORKER_STATUS,
)
BY_NAME = {decl.name: decl for decl in PIPELINE}


def all_topic_names(settings: Settings, decls: Iterable[TopicDecl] = PIPELINE) -> list[str]:
    names = []
    for decl in decls:
        names.append(decl.full_name(settings))
        if decl.has_dlq:
            names.append(decl.dlq_name(settings))
    return names


def resolve(name: str, settings: Settings) -> tuple[str, type[Record]]:
    """A topic name as a user types it (``tokens``, ``raw-text.dlq``) → full name and schema."""
    base = name[: -len(".dlq")] if name.endswith(".dlq") else name
    base = (
        base[len(settings.topic_prefix) :] if settings.topic_prefix and base.startswith(settings.topic_prefix) else base
    )
    if base not in BY_NAME:
        known = ", ".join(sorted(BY_NAME))
        raise KeyError(f"unknown topic {name!r}; known: {known} (and each with .dlq)")
    decl = BY_NAME[base]
    if name.endswith(".dlq"):
        return decl.dlq_name(settings), DeadLetter
    return decl.full_name(settings), decl.schema


async def create_topics(settings: Settings, decls: Iterable[TopicDecl] = PIPELINE) -> list[str]:
    """Create the topics (and their DLQs) that do not exist yet; returns those created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **settings.kafka_auth())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for decl in decls:
            partitions = decl.partitions or settings.partitions
            config = decl.config(settings)
            wanted.append(
                NewTopic(decl.full_name(settings), partitions, settings.replication_factor, topic_configs=config)
            )
            if decl.has_dlq:
                wanted.append(NewTopic(decl.dlq_name(settings), 1, settings.replication_factor, topic_configs=config))
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *_rest in getattr(response, "topic_errors", getattr(response, "topic_error_codes", [])):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent worker won the race)
                    raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
            log.info("created topics: %s", ", ".join(t.name for t in missing))
        return [topic.name for topic in missing]
    finally:
        await admin.close()
