"""The continuous runner without a broker: out-of-order results, acks after delivery, room, cancels."""

import asyncio
from types import SimpleNamespace

import pytest

from scenestream.backbone import ContinuousRunner, StageSpec
from scenestream.schemas import RawText, decode, encode
from scenestream.settings import Settings
from scenestream.topics import CONTROL, RAW_TEXT, TOKENS

pytestmark = pytest.mark.unit


class Producer:
    def __init__(self):
        self.sent = []

    async def send(self, topic, key, value, headers):
        self.sent.append((topic, decode(value, RawText) if not topic.endswith(".dlq") else value))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class Held:
    """A continuous handler whose results the test hands out, in any order."""

    def __init__(self):
        self.waiting = {}
        self.cancelled = []

    def submit(self, record, send, done):
        self.waiting[record.message_id] = (record, send, done)

    def finish(self, message_id, error=None):
        record, send, done = self.waiting.pop(message_id)
        if send is not None:
            send(record.model_copy(update={"text": f"preview {message_id}"}))
        done(error if error is not None else [(TOKENS, record.model_copy(update={"text": record.text.upper()}))])

    def cancel(self, message_id):
        self.cancelled.append(message_id)

    def cancelled_result(self, record):
        return [(TOKENS, record.model_copy(update={"text": "cancelled"}))]

    def close(self):
        pass


async def no_history(topic, partition, most):
    return []


def event(mid, offset, partition=0):
    value = encode(RawText(message_id=mid, session_id="s", text=mid))
    return SimpleNamespace(
        message=SimpleNamespace(topic="raw-text", partition=partition, offset=offset, key=b"s", value=value)
    )


class Stream:
    def __init__(self):
        self.acked = []

    async def ack(self, ev):
        self.acked.append(ev.message.offset)


def runner(most=2, streams=True):
    handler = Held()
    spec = StageSpec(
        name="upper",
        agent="upper_raw_text",
        source=RAW_TEXT,
        sinks=(TOKENS,),
        build=lambda s, r: handler,
        continuous=most,
        streams=streams,
    )
    r = ContinuousRunner(spec, Settings(), producer=Producer(), tail=no_history)
    paused = []
    r.pause = paused.append
    return r, handler, paused


async def settle():
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_results_go_out_and_are_acked_in_the_order_they_finish_with_previews_first():
    async def go():
        r, handler, _paused = runner(most=4)
        await r.start()
        stream = Stream()
        for i in range(3):
            await r.admit(stream, event(f"m{i}", i))
        assert set(handler.waiting) == {"m0", "m1", "m2"} and stream.acked == []
        handler.finish("m2")
        handler.finish("m0")
        await settle()
        assert stream.acked == [2, 0]
        texts = [rec.text for _t, rec in r.producer.sent]
        assert sorted(texts) == ["M0", "M2", "preview m0", "preview m2"]
        assert texts.index("preview m2") < texts.index("M2") and texts.index("preview m0") < texts.index("M0")
        handler.finish("m1")
        await settle()
        assert stream.acked == [2, 0, 1] and not r.inflight
        await r.stop()

    asyncio.run(go())


def test_a_full_stage_pauses_fetching_until_an_answer_is_done():
    async def go():
        r, handler, paused = runner(most=2)
        await r.start()
        stream = Stream()
        await r.admit(stream, event("m0", 0))
        await r.admit(stream, event("m1", 1))
        third = asyncio.create_task(r.admit(stream, event("m2", 2)))
        await settle()
        assert not third.done() and paused == [True] and "m2" not in handler.waiting
        handler.finish("m1")
        await settle()
        assert third.done() and paused == [True, False] and "m2" in handler.waiting
        await r.stop()

    asyncio.run(go())


def test_an_error_dead_letters_its_input_and_an_engine_failure_stops_the_worker():
    async def go():
        r, handler, _paused = runner(most=4, streams=False)
        crashed = []

        async def crash(exc):
            crashed.append(exc)

        r.crash = crash
        await r.start()
        stream = Stream()
        await r.admit(stream, event("m0", 0))
        await r.admit(stream, event("m1", 1))
        handler.finish("m0", error=ValueError("prompt too long"))
        await settle()
        assert stream.acked == [0] and r.producer.sent[0][0] == "raw-text.dlq"
        failure = RuntimeError("the decoder's engine failed")
        failure.stops_stage = True
        handler.finish("m1", error=failure)
        await settle()
        assert stream.acked == [0] and len(crashed) == 1 and r.stopped is not None
        await r.stop()

    asyncio.run(go())


def test_cancel_reaches_a_message_in_flight_and_one_that_comes_later():
    async def go():
        r, handler, _paused = runner(most=4, streams=False)
        await r.start()
        stream = Stream()
        await r.admit(stream, event("m0", 0))
        r.cancel("m0")
        r.cancel("m9")
        assert handler.cancelled == ["m0"]
        await r.admit(stream, event("m9", 1))
        await settle()
        assert "m9" not in handler.waiting and stream.acked == [1]
        assert [rec.text for _t, rec in r.producer.sent] == ["cancelled"]
        await r.stop()

    asyncio.run(go())


def test_a_result_for_a_revoked_partition_is_neither_sent_nor_acked():
    async def go():
        r, handler, _paused = runner(most=4, streams=False)
        r.assigned = lambda topic: {1}
        await r.start()
        stream = Stream()
        await r.admit(stream, event("m0", 0, partition=0))
        handler.finish("m0")
        await settle()
        assert stream.acked == [] and r.producer.sent == [] and not r.inflight
        await r.stop()

    asyncio.run(go())


def test_a_message_redelivered_while_in_flight_is_answered_once_and_both_copies_are_acked():
    async def go():
        r, handler, _paused = runner(most=4, streams=False)
        submitted = []
        submit = handler.submit
        handler.submit = lambda record, send, done: (submitted.append(record.message_id), submit(record, send, done))
        await r.start()
        stream, again = Stream(), Stream()  # the partition came back after a rebalance: a new stream's copy
        await r.admit(stream, event("m0", 0))
        await r.admit(again, event("m0", 0))
        assert submitted == ["m0"] and len(r.inflight) == 1
        handler.finish("m0")
        await settle()
        assert [rec.text for _t, rec in r.producer.sent] == ["M0"]
        assert stream.acked == [0] and again.acked == [0] and not r.inflight and not r.again
        # revoked again before the answer was ready: neither copy is acked, both come again to the new owner
        r.assigned = lambda topic: {1}
        await r.admit(stream, event("m1", 1))
        await r.admit(again, event("m1", 1))
        handler.finish("m1")
        await settle()
        assert stream.acked == [0] and again.acked == [0] and not r.again and len(r.producer.sent) == 1
        await r.stop()

    asyncio.run(go())


def test_the_control_topic_is_declared_once_keyed_by_message():
    assert CONTROL.key == "message_id" and not CONTROL.has_dlq and CONTROL.retention_hours == 1
