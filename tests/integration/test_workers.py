"""Worker processes started the way a user starts them: `scenestream run`, `tail`, `ask`."""

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from scenestream.client import publish, raw_text, read_topic
from scenestream.schemas import Tokens, decode
from scenestream.topics import TOKENS, create_topics

CLI = [sys.executable, "-m", "scenestream"]


def env_for(settings, **extra):
    env = dict(os.environ)
    env.update(
        {
            "SCENESTREAM_BROKER": settings.broker,
            "SCENESTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "SCENESTREAM_APP_ID": settings.app_id,
            "SCENESTREAM_DATA_DIR": str(settings.data_dir),
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def workers():
    procs = []
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_two_workers_of_one_stage_share_its_partitions(settings_factory, workers):
    s = settings_factory(partitions=4)
    asyncio.run(create_topics(s))
    for _ in range(2):
        workers.append(
            subprocess.Popen(
                CLI + ["run", "--stages", "tokenizer"],
                env=env_for(s),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    n = 200
    records = [raw_text(f"message number {i} about the quiet sea", session_id=f"session-{i % 40}") for i in range(n)]

    async def go():
        # let both join; then publish and read everything back with the producing worker of each
        deadline = time.monotonic() + 60
        by_worker = {}
        async for record in read_topic(s, TOKENS.full_name(s), follow=True):
            worker = dict(record.headers).get("x-worker", b"?").decode()
            by_worker.setdefault(worker, set()).add(decode(record.value, Tokens).message_id)
            if sum(map(len, by_worker.values())) >= n or time.monotonic() > deadline:
                break
        return by_worker

    async def run():
        await asyncio.sleep(12)  # two joins and the rebalance between them
        await publish(s, records)
        return await asyncio.wait_for(go(), 60)

    by_worker = asyncio.run(run())
    for proc in workers:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    assert set().union(*by_worker.values()) == {r.message_id for r in records}
    assert len(by_worker) == 2, f"one worker did everything: { {k: len(v) for k, v in by_worker.items()} }"
    assert all(len(v) > 0 for v in by_worker.values())


def test_run_then_ingest_and_tail_from_the_command_line(settings_factory, workers):
    s = settings_factory()
    env = env_for(s, SCENESTREAM_ENGINE="transformers", SCENESTREAM_MAX_NEW_TOKENS="8")
    workers.append(subprocess.Popen(CLI + ["run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    time.sleep(15)  # the decoder loads its model before the worker joins
    out = subprocess.run(
        CLI + ["ingest", "--json", "--session", "cli-1"],
        input='тишина и дрожь\n\n{"text": "the sea"}\n',
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids = [message["message_id"] for message in json.loads(out.stdout)["messages"]]
    assert len(ids) == 3
    deadline = time.monotonic() + 30
    seen = {}
    while time.monotonic() < deadline and len(seen) < 2:
        tail = subprocess.run(CLI + ["tail", "tokens"], env=env, capture_output=True, text=True, timeout=60, check=True)
        seen = {json.loads(line)["value"]["message_id"]: json.loads(line)["value"] for line in tail.stdout.splitlines()}
    assert set(seen) == {ids[0], ids[2]}
    assert [h["text"] for h in seen[ids[0]]["hypertokens"]][:2] and seen[ids[2]]["lang"] == "en"
    dlq = subprocess.run(
        CLI + ["tail", "raw-text.dlq"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    letters = [json.loads(line) for line in dlq.stdout.splitlines()]
    assert [letter["value"]["error_type"] for letter in letters] == ["empty_text"]
    assert letters[0]["value"]["message_id"] == ids[1]
    # ask goes through the stack that is already up instead of starting one
    asked = subprocess.run(
        CLI + ["ask", "--json", "--session", "cli-1", "тишина и дрожь снова"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert asked.returncode == 0, asked.stderr[-2000:]
    result = json.loads(asked.stdout)
    assert result["stack"] == "cluster" and result["output"]["scene_id"] == result["scene"]["scene_id"]
    assert result["scene"]["resonance"] > 0  # the same session said this before


def test_ask_starts_the_embedded_stack_when_none_runs(tmp_path):
    from scenestream.settings import Settings
    from scenestream.training.provision import provision

    provision(Settings(), progress=False)
    env = dict(os.environ, SCENESTREAM_ENGINE="transformers", SCENESTREAM_MAX_NEW_TOKENS="16")
    env.pop("SCENESTREAM_BROKER", None)
    env["SCENESTREAM_DATA_DIR"] = str(tmp_path)
    out = subprocess.run(
        CLI + ["ask", "--json", "Почему я не чувствую шаг в себе?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["stack"] == "embedded"
    scene = result["scene"]
    assert {"чувствую", "шаг"} <= {h["text"] for h in scene["hypertokens"]}
    assert {r["name"] for r in scene["registers"][:2]} == {"body", "philosopher"}
    assert scene["delta_code"].startswith("Δ") and scene["stage"] == "resonated"
    output = result["output"]
    assert output["message_id"] == result["message_id"] and output["scene_id"] == scene["scene_id"]
    assert output["engine"] == "transformers" and output["completion_tokens"] > 0


def test_ask_reports_a_refused_message_clearly(tmp_path):
    env = dict(os.environ, SCENESTREAM_DATA_DIR=str(tmp_path), SCENESTREAM_ENGINE="transformers")
    env.pop("SCENESTREAM_BROKER", None)
    out = subprocess.run(CLI + ["ask", "   "], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "empty" in out.stderr and "Traceback" not in out.stderr


def test_a_worker_whose_broker_is_gone_stops_quickly_and_logs_little(tmp_path):
    """The broker dies under a running worker: the worker logs a rate-limited handful of lines, and SIGTERM
    ends it within SCENESTREAM_SHUTDOWN_TIMEOUT_S (it would otherwise wait out its clients' request timeouts)."""
    import signal

    from scenestream.broker import EmbeddedBroker
    from scenestream.settings import Settings

    broker = EmbeddedBroker().start()
    s = Settings(broker=broker.url, topic_prefix="gone-", app_id="gone", data_dir=tmp_path)
    asyncio.run(create_topics(s))
    log = tmp_path / "worker.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            CLI + ["run", "--stages", "tokenizer"],
            env=env_for(s, SCENESTREAM_LOG_LEVEL="INFO"),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        time.sleep(12)  # joined and running
        assert proc.poll() is None, log.read_text()[-2000:]
        broker.stop()  # the broker is gone
        time.sleep(20)
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()
    lines = log.read_text().splitlines()
    errors = [line for line in lines if " ERROR " in line]
    assert took <= 10.0, f"{took:.1f} s after SIGTERM"
    assert len(errors) <= 60, f"{len(errors)} ERROR lines in 20 s without a broker:\n" + "\n".join(errors[-20:])
