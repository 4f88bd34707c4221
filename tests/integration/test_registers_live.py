"""A fifth register published to a running stack through the real embedded broker: the next message that asks for
it is answered by its adapter, a new version of its weights is served under a new version, and once removed a
message naming it is dead-lettered while the others are still answered. No worker restarts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenestream.client import publish, read_topic
from scenestream.ops.bench_registers import adapter_version_folder as adapter_like
from scenestream.schemas import LoraOutput, decode
from scenestream.schemas.records import DeadLetter, GenerationParams, RawText
from scenestream.schemas.registers import SHIPPED, Catalogue, folders_from, use, version_of
from scenestream.serving import spawn_worker, stop_worker, worker_env
from scenestream.topics import LORA_OUTPUTS, RAW_TEXT, create_topics
from scenestream.training.provision import provision

CLI = [sys.executable, "-m", "scenestream"]
STOIC = """
name = "stoic"
symbol = "🏛"
adapter = "{adapter}"

[description]
ru = "Стоик: спокойно отделяет то, что в нашей власти, от того, что нет."
en = "The stoic: calmly separates what is in our power from what is not."
"""


def env_of(settings, user: Path) -> dict:
    return worker_env(
        settings,
        SCENESTREAM_REGISTERS_PATH=str(user),
        SCENESTREAM_MEMORY="false",
        SCENESTREAM_ENGINE="transformers",
        SCENESTREAM_SCENE_EMBEDDER="static",
        SCENESTREAM_MAX_NEW_TOKENS="6",
        SCENESTREAM_ANSWER_MIN_TOKENS="0",
        SCENESTREAM_LOG_LEVEL="INFO",
    )


def cli(env: dict, *args: str, timeout: float = 120) -> dict:
    done = subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def served(settings, name: str, version, timeout: float = 120.0) -> None:
    """Until the stack's one decoder worker reports it serves ``version`` of register ``name`` (None: not at
    all); a change is taken asynchronously, and a question asked before may be answered by the version before."""
    from scenestream.registry import decoder_statuses

    deadline = time.monotonic() + timeout
    while True:
        (status,) = asyncio.run(decoder_statuses(settings))
        if status.adapters.get(name) == version:
            return
        assert time.monotonic() < deadline, f"the worker serves {status.adapters.get(name)} of {name}, not {version}"
        time.sleep(0.5)


def final_of(settings, message_id: str, log, timeout: float = 180.0) -> LoraOutput:
    async def read():
        async for record in read_topic(settings, LORA_OUTPUTS.full_name(settings)):
            out = decode(record.value, LoraOutput)
            if out.message_id == message_id and out.final:
                return out
        return None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = asyncio.run(read())
        if found is not None:
            return found
        time.sleep(0.5)
    log.flush()
    pytest.fail(f"no answer to {message_id} within {timeout:.0f}s:\n" + open(log.name).read()[-3000:])


def dead_letter_of(settings, message_id: str, timeout: float = 60.0) -> DeadLetter:
    async def read():
        async for record in read_topic(settings, RAW_TEXT.dlq_name(settings)):
            letter = decode(record.value, DeadLetter)
            if message_id.encode() in letter.value:
                return letter
        return None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = asyncio.run(read())
        except KeyError:  # the dead-letter topic is made with the others; not there yet
            found = None
        if found is not None:
            return found
        time.sleep(0.5)
    pytest.fail(f"no dead letter for {message_id} within {timeout:.0f}s")


def ask(settings, message_id: str, register: str) -> None:
    raw = RawText(
        message_id=message_id,
        session_id="registers",
        text="What is in our power when the train is late?",
        force_register=register,
        params=GenerationParams(max_new_tokens=6),
    )
    asyncio.run(publish(settings, [raw]))


def test_a_register_is_published_served_updated_and_removed_without_a_restart(settings_factory, tmp_path):
    provision(settings_factory(), progress=False)
    s = settings_factory(partitions=1, memory=False, scene_embedder="static")
    asyncio.run(create_topics(s))
    user = tmp_path / "registers"
    user.mkdir()
    logician = Catalogue.load([SHIPPED])["logician"].adapter
    first = adapter_like(logician, user / "stoic-1", 1.5)
    env = env_of(s, user)
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - the worker writes to it until stopped
    worker = spawn_worker("tokenizer,scene,decoder", env, log)
    try:
        ask(s, "before", "logician")  # the stack is up and answering before anything changes
        assert final_of(s, "before", log).adapter == "logician"

        (user / "stoic.toml").write_text(STOIC.format(adapter="stoic-1"), encoding="utf-8")
        change = cli(env, "register", "publish", "stoic", "--json")
        assert change["adapter_version"] == version_of("stoic", first)
        served(s, "stoic", change["adapter_version"])
        use(Catalogue.load(folders_from(str(user))))  # this process asks for the new register by name too
        ask(s, "stoic-1", "stoic")
        answer = final_of(s, "stoic-1", log)
        assert answer.register == "stoic" and answer.adapter == "stoic" and answer.text.strip()
        assert answer.adapter_version == version_of("stoic", first) and answer.symbol == "🏛"
        listed = {row["name"]: row for row in cli(env, "register", "list", "--json")}
        (serving,) = listed["stoic"]["decoders"]  # the worker says it serves that version now
        assert serving["version"] == answer.adapter_version and serving["engine"] == "transformers"
        assert [d["version"] for d in listed["poet"]["decoders"]] == [listed["poet"]["adapter_version"]]

        second = adapter_like(logician, user / "stoic-2", 0.5)  # new weights: a new version, a new folder
        (user / "stoic.toml").write_text(STOIC.format(adapter="stoic-2"), encoding="utf-8")
        assert cli(env, "register", "publish", "stoic", "--json")["adapter_version"] == version_of("stoic", second)
        served(s, "stoic", version_of("stoic", second))
        ask(s, "stoic-2", "stoic")
        assert final_of(s, "stoic-2", log).adapter_version == version_of("stoic", second) != answer.adapter_version

        assert cli(env, "register", "remove", "stoic", "--json")["removed"] is True
        served(s, "stoic", None)
        ask(s, "stoic-gone", "stoic")
        letter = dead_letter_of(s, "stoic-gone")
        assert "unknown register 'stoic'" in letter.reason
        assert "stoic" not in {row["name"] for row in cli(env, "register", "list", "--json")}  # as the stack has it
        ask(s, "after", "poet")  # no failed request around the change: the others are still answered
        assert final_of(s, "after", log).adapter == "poet"
        assert worker.poll() is None, "the worker restarted or died"
        # (what the worker took is checked through its reports above: its log holds back repeats of a line
        # within 10 s, so three changes in a few seconds do not make three log lines)
    finally:
        use(None)
        stop_worker(worker)
        log.close()


def test_a_register_added_from_examples_is_routed_to_answered_and_removed(settings_factory, tmp_path):
    """`register add` with the examples the tests ship (30, Russian and English): the router head is refitted and
    the adapter trained for a few steps; the running stack routes the next fitting question to it and answers
    with its adapter; `register remove` and the same question goes elsewhere. The worker never restarts."""
    provision(settings_factory(), progress=False)
    s = settings_factory(partitions=1, memory=False, scene_embedder="e5")
    asyncio.run(create_topics(s))
    user = tmp_path / "registers"
    user.mkdir()
    env = {**env_of(s, user), "SCENESTREAM_SCENE_EMBEDDER": "e5"}
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - the worker writes to it until stopped
    worker = spawn_worker("tokenizer,scene,decoder", env, log)
    examples = Path(__file__).resolve().parent.parent / "data" / "stoic.jsonl"
    try:
        ask(s, "before-add", "poet")
        assert final_of(s, "before-add", log).adapter == "poet"

        added = cli(env, "register", "add", "stoic", "--examples", str(examples), "--symbol", "🏛", "--epochs", "0.5",
                    "--json", timeout=900)  # fmt: skip
        assert added["added"] and added["published"] is not None and added["training"]
        router = added["router"]
        assert router["after"]["e5"]["stoic"] >= 0.75, router  # the held-out fifth of the examples
        held_out = [json.loads(line) for line in open(added["files"]["router"], encoding="utf-8")]
        question = next(row["text"] for row in held_out if row["split"] == "test")
        version = json.loads(subprocess.run(CLI + ["register", "list", "--json"], env=env, capture_output=True,
                                            text=True, check=True).stdout)[-1]  # fmt: skip
        assert version["name"] == "stoic" and version["adapter_version"].startswith("stoic@")
        served(s, "stoic", version["adapter_version"])  # the worker took it (and the scene builder its head)

        raw = RawText(
            message_id="fits", session_id="registers", text=question, params=GenerationParams(max_new_tokens=6)
        )
        asyncio.run(publish(s, [raw]))
        answer = final_of(s, "fits", log)
        assert answer.register == "stoic" and answer.adapter == "stoic", question
        assert answer.adapter_version == version["adapter_version"]

        assert cli(env, "register", "remove", "stoic", "--json")["removed"] is True
        served(s, "stoic", None)
        again = raw.model_copy(update={"message_id": "fits-after-removal"})
        asyncio.run(publish(s, [again]))
        assert final_of(s, "fits-after-removal", log).register != "stoic"
        assert worker.poll() is None, "the worker restarted or died"
    finally:
        use(None)
        stop_worker(worker)
        log.close()
