"""The decoder's engine loops without a model: admission at the next step, each job done once, aborts."""

import threading
import time
from types import SimpleNamespace

import pytest

from scenestream.agents.decoder.engines import Generation, Request
from scenestream.agents.decoder.loop import BatchLoop, EngineFailed, Job, ThreadLoop, VLLMLoop

pytestmark = pytest.mark.unit


class FakeCore:
    """vLLM's engine core as the loop uses it: each step gives every running request one token ("w")."""

    def __init__(self, lengths, fail_at_step=None):
        self.lengths = lengths  # request id prefix → tokens it generates
        self.running = {}
        self.steps = 0
        self.admitted_at = {}
        self.fail_at_step = fail_at_step

    def add_request(self, request_id, prompt, params, lora_request=None):
        self.running[request_id] = self.lengths[request_id.split("#")[0]]
        self.admitted_at[request_id] = self.steps

    def abort_request(self, ids):
        for request_id in ids:
            self.running.pop(request_id, None)

    def has_unfinished_requests(self):
        return bool(self.running)

    def step(self):
        self.steps += 1
        if self.fail_at_step == self.steps:
            raise RuntimeError("engine core died")
        time.sleep(0.005)
        outs = []
        for request_id in list(self.running):
            self.running[request_id] -= 1
            finished = self.running[request_id] == 0
            if finished:
                del self.running[request_id]
            outs.append(
                SimpleNamespace(
                    request_id=request_id,
                    finished=finished,
                    outputs=[SimpleNamespace(text="w ", token_ids=[1], finish_reason="length" if finished else None)],
                )
            )
        return outs


class FakeVLLM:
    name = "vllm"

    def __init__(self, core):
        self.llm = SimpleNamespace(llm_engine=core)
        self.adapters = {"poet": "p"}
        self.lock = threading.Lock()

    def add(self, request_id, request):
        if request.prompt == "too long":
            raise ValueError("prompt too long")
        self.llm.llm_engine.add_request(request_id, request.prompt, None)
        return 3


def collect(job_id, prompt="p", adapter="poet", stop_after=None):
    done = threading.Event()
    got = {"deltas": []}

    def on_delta(text):
        got["deltas"].append(text)
        return stop_after is not None and len(got["deltas"]) >= stop_after

    def on_done(outcome):
        assert "outcome" not in got, "on_done called twice"
        got["outcome"] = outcome
        done.set()

    return Job(job_id, Request(prompt, adapter), on_delta=on_delta, on_done=on_done), got, done


def test_vllm_loop_admits_a_new_request_while_another_runs_and_hands_each_on_when_done():
    core = FakeCore({"long": 40, "short": 3})
    loop = VLLMLoop(FakeVLLM(core))
    try:
        long_job, long_got, long_done = collect("long#0")
        loop.submit(long_job)
        while core.steps < 5:
            time.sleep(0.001)
        short_job, short_got, short_done = collect("short#1")
        loop.submit(short_job)
        assert short_done.wait(5)
        # the short answer joined the running batch and left it before the long one finished
        assert not long_done.is_set()
        assert core.admitted_at["short#1"] >= 5 and core.admitted_at["short#1"] <= core.steps
        gen = short_got["outcome"]
        assert isinstance(gen, Generation)
        assert gen.text == "w w w " and gen.completion_tokens == 3 and gen.finish_reason == "length"
        assert gen.prompt_tokens == 3 and gen.adapter == "poet" and gen.first_token_ms is not None
        assert long_done.wait(5) and long_got["outcome"].completion_tokens == 40
    finally:
        loop.close()


def test_vllm_loop_abort_frees_the_slot_and_says_cancelled():
    core = FakeCore({"a": 1000})
    loop = VLLMLoop(FakeVLLM(core))
    try:
        job, got, done = collect("a#0")
        loop.submit(job)
        while core.steps < 3:
            time.sleep(0.001)
        loop.abort("a#0")
        assert done.wait(5)
        assert got["outcome"].finish_reason == "cancelled"
        assert not core.running and loop.inflight == 0
    finally:
        loop.close()


def test_vllm_loop_stops_a_request_its_receiver_ends():
    core = FakeCore({"a": 1000})
    loop = VLLMLoop(FakeVLLM(core))
    try:
        job, got, done = collect("a#0", stop_after=4)
        loop.submit(job)
        assert done.wait(5)
        assert got["outcome"].finish_reason == "sentence" and got["outcome"].text == "w " * 4
        time.sleep(0.05)
        assert not core.running  # aborted in the engine too
    finally:
        loop.close()


def test_a_request_the_engine_refuses_fails_alone():
    core = FakeCore({"ok": 2})
    loop = VLLMLoop(FakeVLLM(core))
    try:
        bad, bad_got, bad_done = collect("bad#0", prompt="too long")
        good, good_got, good_done = collect("ok#1")
        loop.submit(bad)
        loop.submit(good)
        assert bad_done.wait(5) and good_done.wait(5)
        assert isinstance(bad_got["outcome"], ValueError)
        assert good_got["outcome"].text == "w w "
    finally:
        loop.close()


def test_an_engine_failure_fails_every_job_with_engine_failed():
    core = FakeCore({"a": 100, "b": 100}, fail_at_step=3)
    loop = VLLMLoop(FakeVLLM(core))
    try:
        a, a_got, a_done = collect("a#0")
        b, b_got, b_done = collect("b#1")
        loop.submit(a)
        loop.submit(b)
        assert a_done.wait(5) and b_done.wait(5)
        assert isinstance(a_got["outcome"], EngineFailed) and a_got["outcome"].stops_stage
        late, late_got, late_done = collect("a#2")
        loop.submit(late)
        assert late_done.wait(5) and isinstance(late_got["outcome"], EngineFailed)
    finally:
        loop.close()


class FakeBatchEngine:
    name = "transformers"
    adapters = {"poet": "p"}

    def __init__(self):
        self.batches = []
        self.release = threading.Event()

    def generate(self, requests, on_delta=None):
        self.batches.append([r.prompt for r in requests])
        if len(self.batches) == 1:
            self.release.wait(5)
        for i, _ in enumerate(requests):
            if on_delta:
                on_delta(i, "x")
        return [Generation(f"answer {r.prompt}", r.adapter, 2, 1, 1.0, 2.0, "stop") for r in requests]


def test_batch_loop_admits_what_waits_when_a_batch_ends():
    engine = FakeBatchEngine()
    loop = BatchLoop(engine, max_batch=8)
    try:
        first, first_got, first_done = collect("1", prompt="one")
        loop.submit(first)
        while not engine.batches:
            time.sleep(0.001)
        later = [collect(f"{i}", prompt=f"p{i}") for i in range(2, 5)]
        for job, _got, _done in later:
            loop.submit(job)
        loop.abort("3")
        # waiting behind the batch being generated: its cancelled answer goes out now, not when the batch ends
        assert later[1][2].wait(1) and not first_done.is_set()
        engine.release.set()
        for _job, _got, done in [(first, first_got, first_done), *later]:
            assert done.wait(5)
        assert engine.batches == [["one"], ["p2", "p4"]]
        assert later[1][1]["outcome"].finish_reason == "cancelled"
        assert later[0][1]["outcome"].text == "answer p2" and later[0][1]["deltas"] == ["x"]
    finally:
        loop.close()


class FakeServer:
    name = "openai"
    adapters = {}

    def generate(self, requests, on_delta=None):
        for _ in range(200):
            time.sleep(0.002)
            on_delta(0, "t")
        return [Generation("t" * 200, "base", 1, 200, 1.0, 2.0, "length")]


def test_thread_loop_cancels_a_streaming_call():
    loop = ThreadLoop(FakeServer(), max_inflight=4)
    try:
        job, got, done = collect("a")
        loop.submit(job)
        while len(got["deltas"]) < 3:
            time.sleep(0.001)
        loop.abort("a")
        assert done.wait(5)
        assert got["outcome"].finish_reason == "cancelled" and len(got["deltas"]) < 200
    finally:
        loop.close()


class FakeRowEngine:
    """A batch engine that, like transformers, stops a row whose receiver returns True and goes on with the rest."""

    name = "transformers"
    adapters = {}

    def generate(self, requests, on_delta=None):
        stopped, counts = set(), [0] * len(requests)
        for _step in range(300):
            for i in range(len(requests)):
                if i not in stopped and counts[i] < 100:
                    counts[i] += 1
                    if on_delta(i, "t"):
                        stopped.add(i)
            time.sleep(0.001)
        return [Generation("t" * c, "base", 1, c, 1.0, 2.0, "length") for c in counts]


def test_batch_loop_stops_an_aborted_row_while_its_batch_runs():
    loop = BatchLoop(FakeRowEngine(), max_batch=8)
    try:
        a, a_got, a_done = collect("a")
        b, b_got, b_done = collect("b")
        loop.submit(a)
        loop.submit(b)
        while len(a_got["deltas"]) < 5:
            time.sleep(0.001)
        loop.abort("a")
        assert a_done.wait(10) and b_done.wait(10)
        assert a_got["outcome"].finish_reason == "cancelled" and a_got["outcome"].completion_tokens < 100
        assert b_got["outcome"].completion_tokens == 100 and b_got["outcome"].finish_reason == "length"
    finally:
        loop.close()
