"""The backbone's decisions without a broker: what goes where, and when a batch is acked."""

import asyncio
from types import SimpleNamespace

import msgpack
import pytest

from scenestream.backbone import StageRunner, StageSpec, map_each
from scenestream.schemas import DeadLetter, RawText, decode, encode
from scenestream.settings import Settings
from scenestream.topics import RAW_TEXT, TOKENS


class FakeProducer:
    def __init__(self, fail_first=0):
        self.sent = []
        self.fail_first = fail_first

    async def send(self, topic, key, value, headers):
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("broker away")
        self.sent.append((topic, key, value))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class Upper:
    def process(self, records):
        def one(record):
            if record.text == "boom":
                raise RuntimeError("transform failed")
            return [(TOKENS, record.model_copy(update={"text": record.text.upper()}))]

        return map_each(one, records)

    def close(self):
        pass


async def no_history(topic, partition, most):
    """The tail of an output topic that holds nothing yet (no broker in the unit tier)."""
    return []


def event(value, offset):
    return SimpleNamespace(message=SimpleNamespace(topic="raw-text", partition=0, offset=offset, key=b"s", value=value))


def spec():
    return StageSpec(name="upper", agent="upper_raw_text", source=RAW_TEXT, sinks=(TOKENS,), build=lambda s, r: Upper())


def good(text, mid):
    return encode(RawText(message_id=mid, session_id="s", text=text))


def test_plan_routes_results_and_dead_letters_in_order():
    runner = StageRunner(spec(), Settings(), FakeProducer(), tail=no_history)
    events = [
        event(good("a", "m1"), 0),
        event(b"\xc1junk", 1),
        event(good("boom", "m3"), 2),
        event(msgpack.packb({"text": "no ids"}), 3),
        event(good("b", "m5"), 4),
    ]
    sends = runner.plan(events)
    names = [topic for topic, _key, _value, _event in sends]
    assert names == ["tokens", "raw-text.dlq", "raw-text.dlq", "raw-text.dlq", "tokens"]
    letters = [decode(value, DeadLetter) for topic, _k, value, _e in sends if topic.endswith(".dlq")]
    assert [d.offset for d in letters] == [1, 2, 3]
    assert [d.error_type for d in letters] == ["undecodable", "processing", "schema"]
    assert letters[0].value == b"\xc1junk" and letters[0].stage == "upper"
    assert letters[1].message_id == "m3" and "transform failed" in letters[1].reason
    assert decode(sends[-1][2], RawText).text == "B"


def test_batch_is_acked_only_after_delivery_even_when_sends_fail_first():
    producer = FakeProducer(fail_first=2)
    runner = StageRunner(spec(), Settings(), producer, tail=no_history)
    acked = []

    class Stream:
        async def ack(self, ev):
            assert producer.sent, "acked before the result was delivered"
            acked.append(ev.message.offset)

    async def go():
        await runner.handle(Stream(), [event(good("a", "m1"), 0), event(good("c", "m2"), 1)])

    asyncio.run(go())
    assert acked == [0, 1]
    assert [topic for topic, _k, _v in producer.sent] == ["tokens", "tokens"]


def test_records_a_stage_does_not_accept_are_acked_without_output():
    s = StageSpec(
        name="upper",
        agent="upper_raw_text",
        source=RAW_TEXT,
        sinks=(TOKENS,),
        build=lambda s, r: Upper(),
        accepts=lambda record: record.source != "replay",
    )
    runner = StageRunner(s, Settings(), FakeProducer(), tail=no_history)
    skipped = encode(RawText(message_id="m", session_id="s", text="x", source="replay"))
    assert runner.plan([event(skipped, 0)]) == []


def test_batch_then_each_isolates_the_record_that_broke_the_batch():
    from scenestream.backbone import batch_then_each

    def build(batch):
        if any(r == "bad" for r in batch):
            raise ValueError("bad record in batch")
        return [[("out", r.upper())] for r in batch]

    results = batch_then_each(build, ["a", "bad", "c"])
    assert results[0] == [("out", "A")] and results[2] == [("out", "C")]
    assert isinstance(results[1], ValueError)
    assert isinstance(batch_then_each(build, ["bad"])[0], ValueError)  # a lone bad record: its error, no raise


class Streaming:
    """A handler that streams two previews per record while it works, from its thread."""

    def process(self, records, emit):
        for record in records:
            for i in range(2):
                emit(TOKENS, record.model_copy(update={"text": f"{record.text}-preview{i}"}))
        return map_each(lambda r: [(TOKENS, r.model_copy(update={"text": r.text.upper()}))], records)

    def close(self):
        pass


def test_streamed_records_go_first_keyed_like_their_input_and_are_confirmed_before_the_ack():
    producer = FakeProducer()
    stream_spec = StageSpec(
        name="stream",
        agent="stream_raw_text",
        source=RAW_TEXT,
        sinks=(TOKENS,),
        build=lambda s, r: Streaming(),
        in_thread=True,
        streams=True,
    )
    runner = StageRunner(stream_spec, Settings(), producer, tail=no_history)
    acked = []

    class Stream:
        async def ack(self, ev):
            acked.append(ev.message.offset)

    first = event(good("a", "m1"), 0)
    second = SimpleNamespace(
        message=SimpleNamespace(topic="raw-text", partition=0, offset=1, key=b"k2", value=good("b", "m2"))
    )
    asyncio.run(runner.handle(Stream(), [first, second]))
    texts = [(decode(value, RawText).text, key) for _topic, key, value in producer.sent]
    assert texts == [
        ("a-preview0", b"s"),
        ("a-preview1", b"s"),
        ("b-preview0", b"k2"),
        ("b-preview1", b"k2"),
        ("A", b"s"),
        ("B", b"k2"),
    ]
    assert acked == [0, 1]


class PickyProducer(FakeProducer):
    """Refuses values over ``limit`` bytes as aiokafka does (MessageSizeTooLargeError, never retriable); fails
    the first send of ``flaky`` topics once with a retriable error."""

    def __init__(self, limit, flaky=()):
        super().__init__()
        self.limit = limit
        self.flaky = set(flaky)
        self.attempts = []

    async def send(self, topic, key, value, headers):
        from aiokafka.errors import MessageSizeTooLargeError

        self.attempts.append((topic, value))
        if len(value) > self.limit:
            raise MessageSizeTooLargeError(f"{len(value)} bytes")
        if topic in self.flaky:
            self.flaky.discard(topic)
            raise ConnectionError("broker away")
        return await super().send(topic, key, value, headers)


def handle(runner, events):
    acked = []

    class Stream:
        async def ack(self, ev):
            acked.append(ev.message.offset)

    asyncio.run(runner.handle(Stream(), events))
    return acked


class Double(Upper):
    def process(self, records):
        return map_each(lambda r: [(TOKENS, r.model_copy(update={"text": r.text * 2}))], records)


def test_a_result_that_can_never_be_sent_dead_letters_its_input_and_the_batch_goes_on():
    producer = PickyProducer(limit=1300)
    double = StageSpec(
        name="upper", agent="upper_raw_text", source=RAW_TEXT, sinks=(TOKENS,), build=lambda s, r: Double()
    )
    runner = StageRunner(double, Settings(), producer, tail=no_history)
    acked = handle(runner, [event(good("a", "m1"), 0), event(good("x" * 700, "m2"), 1), event(good("b", "m3"), 2)])
    assert acked == [0, 1, 2]
    sent = [
        (topic, decode(value, DeadLetter) if topic.endswith(".dlq") else decode(value, RawText))
        for topic, _k, value in producer.sent
    ]
    assert [t for t, _r in sent] == ["tokens", "tokens", "raw-text.dlq"]
    letter = sent[-1][1]
    assert letter.offset == 1 and letter.error_type == "undeliverable" and not letter.truncated
    assert "MessageSizeTooLargeError" in letter.reason and "tokens" in letter.reason
    assert decode(letter.value, RawText).text == "x" * 700  # the original input, whole
    assert runner.dead == 1


def test_a_dead_letter_over_the_limit_goes_truncated_with_size_and_hash():
    import hashlib

    producer = PickyProducer(limit=1600)
    runner = StageRunner(spec(), Settings(), producer, tail=no_history)
    big = good("y" * 3000, "m1")
    assert handle(runner, [event(big, 0)]) == [0]
    ((topic, _k, value),) = producer.sent
    letter = decode(value, DeadLetter)
    assert topic == "raw-text.dlq" and letter.truncated
    assert letter.value == big[:1024] and letter.value_size == len(big)
    assert letter.value_sha256 == hashlib.sha256(big).hexdigest()


def test_when_not_even_the_truncated_dead_letter_fits_the_stage_stops_without_acking():
    from scenestream.backbone import StageStopped

    producer = PickyProducer(limit=300)
    runner = StageRunner(spec(), Settings(), producer, tail=no_history)
    with pytest.raises(StageStopped, match="cannot be delivered"):
        handle(runner, [event(good("z" * 600, "m1"), 0)])
    assert producer.sent == []


def test_retries_resend_only_what_failed():
    producer = PickyProducer(limit=10_000, flaky={"tokens"})
    runner = StageRunner(spec(), Settings(), producer, tail=no_history)
    assert handle(runner, [event(good("a", "m1"), 0), event(good("b", "m2"), 1)]) == [0, 1]
    texts = [decode(value, RawText).text for _t, _k, value in producer.sent]
    assert sorted(texts) == ["A", "B"]  # each exactly once
    assert len(producer.attempts) == 3  # the failed one again, not the batch


def test_errors_are_sorted_into_retriable_and_permanent():
    from aiokafka import errors

    from scenestream.backbone import is_permanent

    for exc in (
        errors.MessageSizeTooLargeError(),
        errors.UnknownTopicOrPartitionError(),
        errors.TopicAuthorizationFailedError(),
        TypeError("not bytes"),
    ):
        assert is_permanent(exc), exc
    for exc in (
        errors.KafkaConnectionError(),
        errors.RequestTimedOutError(),
        errors.NotLeaderForPartitionError(),
        errors.KafkaTimeoutError(),
        ConnectionError(),
        TimeoutError(),
    ):
        assert not is_permanent(exc), exc


def test_an_input_answered_before_is_acked_without_a_second_answer():
    producer = FakeProducer()
    runner = StageRunner(spec(), Settings(), producer, tail=no_history)
    acked = handle(runner, [event(good("a", "m1"), 0), event(good("a", "m1"), 1), event(good("b", "m2"), 2)])
    assert acked == [0, 1, 2]
    assert [decode(v, RawText).message_id for _t, _k, v in producer.sent] == ["m1", "m2"]
    assert runner.answered.skipped == 1


def test_after_a_restart_the_answers_on_the_output_topic_are_read_back():
    answered_before = [encode(RawText(message_id="m1", session_id="s", text="A"))]
    reads = []

    async def tail(topic, partition, most):
        reads.append((topic, partition, most))
        return answered_before

    from scenestream.topics import TopicDecl

    # Upper writes RawText records: its output topic's schema, for reading its answers back
    upper = StageSpec(
        name="upper",
        agent="upper_raw_text",
        source=RAW_TEXT,
        sinks=(TopicDecl("tokens", RawText),),
        build=lambda s, r: Upper(),
    )
    producer = FakeProducer()
    runner = StageRunner(upper, Settings(dedup_window=50), producer, tail=tail)
    # a restarted worker reads offsets 0-1 again: m1 was answered before the crash, m2 was not
    assert handle(runner, [event(good("a", "m1"), 0), event(good("b", "m2"), 1)]) == [0, 1]
    assert reads == [("tokens", 0, 50)]
    assert [decode(v, RawText).message_id for _t, _k, v in producer.sent] == ["m2"]
    handle(runner, [event(good("c", "m3"), 2)])  # the continuation: nothing to read back
    assert len(reads) == 1
    handle(runner, [event(good("a", "m1"), 0)])  # a rewind (the partition came back after a rebalance)
    assert len(reads) == 2


def test_the_memory_of_answered_ids_is_bounded():
    from scenestream.answered import RecentIds

    ids = RecentIds(3)
    for i in range(5):
        ids.add(f"m{i}")
    assert len(ids) == 3 and "m0" not in ids and "m4" in ids


def test_results_of_partitions_revoked_during_the_batch_are_not_sent_nor_acked():
    producer = FakeProducer()
    runner = StageRunner(spec(), Settings(), producer, tail=no_history)
    runner.assigned = lambda topic: {0}  # a rebalance took partition 1 away meanwhile
    moved = SimpleNamespace(
        message=SimpleNamespace(topic="raw-text", partition=1, offset=0, key=b"s", value=good("b", "m2"))
    )
    acked = handle(runner, [event(good("a", "m1"), 0), moved])
    assert acked == [0]
    assert [decode(v, RawText).message_id for _t, _k, v in producer.sent] == ["m1"]
