"""Poison from a Kafka client the project did not write (confluent-kafka, librdkafka): every malformed value is
dead-lettered with a reason that says what it was, the 2 MiB one truncated, and the stage goes on."""

from __future__ import annotations

import asyncio
import hashlib

import msgpack
import pytest

from scenestream.client import read_topic
from scenestream.runtime import running_worker, select_stages
from scenestream.schemas import DeadLetter, RawText, Tokens, decode, encode
from scenestream.topics import RAW_TEXT, TOKENS

confluent_kafka = pytest.importorskip("confluent_kafka", reason="confluent-kafka comes with the test extra")

TWO_MIB = encode(RawText(message_id="big", session_id="s-poison", text="б" * (1024 * 1024)))  # 2 MiB of UTF-8
NEWER = msgpack.packb({"message_id": "v99", "session_id": "s-poison", "text": "from the future", "schema_version": 99})
POISON = {  # value → (error type, words the reason must hold)
    b"   \n\t ": ("undecodable", "whitespace"),
    b'"just a JSON string"': ("schema", "JSON (a string)"),
    b"\xff\xfe\xfd invalid UTF-8": ("undecodable", "binary"),
    b"plain words, not a record": ("undecodable", "plain text"),
    b"": ("undecodable", "empty"),
    NEWER: ("schema_version", "newer than this reader"),
    TWO_MIB: ("too_long", "over the limit"),
}


def produce_with_confluent(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4 * 1024 * 1024})
    failures = []
    for value in values:
        producer.produce(
            topic, key=b"s-poison", value=value, on_delivery=lambda err, _msg: failures.append(err) if err else None
        )
    assert producer.flush(30) == 0 and failures == []


def test_poison_from_a_foreign_client_is_dead_lettered_and_the_stage_goes_on(settings_factory):
    s = settings_factory()
    good = RawText(message_id="after-the-poison", session_id="s-poison", text="тишина после бури")

    async def go():
        async with running_worker(s, select_stages(["tokenizer"])):
            await asyncio.to_thread(
                produce_with_confluent, s.bootstrap_servers[0], RAW_TEXT.full_name(s), [*POISON, encode(good)]
            )
            letters, tokens = [], []

            async def collect(topic, into, n):
                async for record in read_topic(s, topic, follow=True):
                    into.append(record)
                    if len(into) >= n:
                        return

            await asyncio.wait_for(collect(RAW_TEXT.dlq_name(s), letters, len(POISON)), 60)
            await asyncio.wait_for(collect(TOKENS.full_name(s), tokens, 1), 30)
            return letters, tokens

    letters, tokens = asyncio.run(go())
    assert [decode(t.value, Tokens).message_id for t in tokens] == [good.message_id]  # no stall
    by_offset = sorted((decode(r.value, DeadLetter) for r in letters), key=lambda d: d.offset)
    for letter, (value, (error_type, words)) in zip(by_offset, POISON.items()):
        assert letter.error_type == error_type and words in letter.reason, (letter.reason, value[:40])
        if value is TWO_MIB:  # its dead letter would be over the producer's 1 MiB: sent truncated
            assert letter.truncated and letter.value == value[:1024]
            assert letter.value_size == len(value) and letter.value_sha256 == hashlib.sha256(value).hexdigest()
        else:
            assert not letter.truncated and (letter.value or b"") == value
