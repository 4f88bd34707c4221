"""The live feed of ``scenestream serve``: every scene and answer of a tenant as it passes the gateway's reader.

The gateway reads ``scenes``, ``lora-outputs`` and the dead-letter topics for every message (not only its own
requests'); :meth:`Feed.publish` turns each record into an event and puts it on the queue of every subscriber
of the record's tenant (``GET /v1/feed``, ``scenestream/api/views.py``). Events are JSON objects with a ``type``:

* ``scene``: the scene the decoder answers (the resonated one when memory is on), with its text;
* ``delta``: a streamed piece of an answer (``seq`` 0, 1, …);
* ``final``: the whole answer (``cancelled`` true when the decoder stopped it: not an answer);
* ``error``: a dead letter of the message (the stage and its reason);
* ``gap``: this subscriber was too slow and ``lost`` events were dropped (the feed never blocks the reader).

A record is shown only to its own tenant. A dead letter carries no tenant of its own: the one of the original
record it holds is used, and a dead letter whose original cannot be read is shown to nobody.

    feed = Feed("resonated")
    with feed.subscribe("acme") as events:
        feed.publish(scene)                 # the gateway's reader, for every record it decodes
        event = await events.get()          # {"type": "scene", "message_id": ..., "text": ..., ...}
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Iterator, Optional

from scenestream.schemas.records import DeadLetter, LoraOutput, Scene

QUEUE = 512  # events held for one subscriber before it counts as too slow


class Subscription:
    """One subscriber's events (:meth:`get`), in the order the reader saw their records."""

    def __init__(self, tenant: str, size: int = QUEUE) -> None:
        self.tenant = tenant
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=size)
        self.lost = 0

    def put(self, event: dict) -> None:
        if self.lost and not self.queue.full():  # the gap goes in where the events were lost, before newer ones
            self.queue.put_nowait(self._gap())
        if self.lost or self.queue.full():
            self.lost += 1
            return
        self.queue.put_nowait(event)

    async def get(self, timeout: Optional[float] = None) -> dict:
        """The next event (a ``gap`` event where events were dropped); TimeoutError after ``timeout`` s."""
        if self.lost and self.queue.empty():
            return self._gap()
        return await asyncio.wait_for(self.queue.get(), timeout)

    def _gap(self) -> dict:
        lost, self.lost = self.lost, 0
        return {"type": "gap", "lost": lost}


class Feed:
    """Tenant → its subscribers; :meth:`publish` fans a record out as an event (see the module doc)."""

    def __init__(self, wanted_stage: str, size: int = QUEUE) -> None:
        self.wanted_stage = wanted_stage
        self.size = size
        self.subscribers: set[Subscription] = set()

    @contextlib.contextmanager
    def subscribe(self, tenant: str) -> Iterator[Subscription]:
        subscription = Subscription(tenant, self.size)
        self.subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self.subscribers.discard(subscription)

    def publish(self, item: Any) -> None:
        if not self.subscribers:
            return
        found = event_of(item, self.wanted_stage)
        if found is None:
            return
        tenant, event = found
        for subscription in list(self.subscribers):
            if subscription.tenant == tenant:
                subscription.put(event)


def event_of(item: Any, wanted_stage: str) -> Optional[tuple[str, dict]]:
    """``(tenant, event)`` of a record read by the gateway, or None when the feed does not show it."""
    if isinstance(item, Scene):
        if item.stage != wanted_stage:
            return None  # a formed scene when memory is on: the resonated one follows
        event = {
            "type": "scene",
            "message_id": item.message_id,
            "session": item.session_id,
            "scene_id": item.scene_id,
            "text": item.text,
            "lang": item.lang,
            "register": item.force_register or item.register,
            "registers": [{"name": r.name, "weight": r.weight} for r in item.registers],
            "linkage": item.linkage,
            "delta_code": item.delta_code,
            "field": item.field.model_dump(mode="json"),
            "resonance": item.resonance,
            "echoes": item.echoes,
            "symbol": item.symbol,
            "ts_ms": item.ts_ms,
            "replay_of": item.replay_of,
        }
        return item.tenant, event
    if isinstance(item, LoraOutput):
        if not item.final:
            return item.tenant, {"type": "delta", "message_id": item.message_id, "seq": item.seq, "text": item.text}
        event = {
            "type": "final",
            "message_id": item.message_id,
            "session": item.session_id,
            "scene_id": item.scene_id,
            "text": item.text,
            "register": item.register,
            "adapter": item.adapter,
            "finish_reason": item.finish_reason,
            "cancelled": item.cancelled,
            "completion_tokens": item.completion_tokens,
            "timings_ms": item.timings_ms,
            "replay_of": item.replay_of,
        }
        return item.tenant, event
    if isinstance(item, DeadLetter):
        tenant = dead_letter_tenant(item)
        if tenant is None or not item.message_id:
            return None
        event = {
            "type": "error",
            "message_id": item.message_id,
            "stage": item.stage,
            "topic": item.topic,
            "reason": item.reason,
            "error_type": item.error_type,
        }
        return tenant, event
    return None


def dead_letter_tenant(item: DeadLetter) -> Optional[str]:
    """The tenant of the original record a dead letter holds (``default`` when the record names none, as the
    records' own default), or None when the original cannot be read (truncated, not a record)."""
    from scenestream.schemas.codec import unpack

    if item.value is None or item.truncated:
        return None
    try:
        doc = unpack(item.value)
    except Exception:
        return None
    tenant = doc.get("tenant", "default") if isinstance(doc, dict) else None
    return tenant if isinstance(tenant, str) else None
