"""``scenestream bench registers``: how fast a running stack takes a new adapter version, and what a load/unload
cycle costs the requests around it.

On its own embedded broker, one ``scenestream run`` worker (tokenizer, scene, decoder; memory off; the vLLM CPU
engine where installed) and a fifth register ``bench`` whose adapter is the logician's weights scaled (a real
adapter, new weights each version):

* **load**: ``loads`` times, a new version of ``bench``'s adapter is published (``register publish``: copied
  into the adapter store, announced on the ``registers`` topic); from the moment it is sent, a message forcing
  ``bench`` is published, and again each time its answer comes from an older version, one at a time, until an
  answer comes back from the new version. Reported: publish → that answer's first streamed piece, and → its
  final record (p50, max), and how many were asked.
* **cycle**: ``rate`` requests/s of ordinary messages for ``seconds``, once quiet and once while ``bench`` is
  published (a new version) and removed in turn every ``every`` seconds; first token and answer p50/p99 of
  each, their ratio, and the requests that failed (dead-lettered or unanswered).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from scenestream.ops.bench_continuous import _pct

STOIC = """name = "bench"
symbol = "◇"
adapter = "{adapter}"

[description]
ru = "Регистр замера: веса логика, умноженные на число."
en = "The benchmark's register: the logician's weights, scaled."
"""


def adapter_version_folder(source: Path, folder: Path, scale: float) -> Path:
    """A real adapter in ``folder``: ``source``'s weights with the B matrices scaled by ``scale`` (new weights,
    so a new version; the tests use it too)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    weights = load_file(folder / "adapter_model.safetensors")
    save_file({k: v * scale if "lora_B" in k else v for k, v in weights.items()}, folder / "adapter_model.safetensors")
    return folder


def run_registers_bench(
    loads: int = 5,
    rate: float = 1.0,
    seconds: float = 30.0,
    every: float = 5.0,
    engine: Optional[str] = None,
    progress: bool = True,
) -> dict:
    from scenestream.agents.decoder.engines import choose_engine_name
    from scenestream.broker import EmbeddedBroker
    from scenestream.schemas.records import GenerationParams
    from scenestream.schemas.registers import SHIPPED, Catalogue, folders_from, use
    from scenestream.serving import spawn_worker, stop_worker, worker_env
    from scenestream.settings import Settings
    from scenestream.topics import create_topics
    from scenestream.training.provision import provision

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    provision(Settings(), progress=progress)
    engine = engine or choose_engine_name(Settings())
    work = Path(tempfile.mkdtemp(prefix="bench-registers-"))
    user = work / "registers"
    user.mkdir()
    logician = Catalogue.load([SHIPPED])["logician"].adapter
    # long enough that the answer streams before its end (the last 16 tokens are held back to a sentence end)
    params = GenerationParams(max_new_tokens=48)
    report: dict = {"engine": engine, "loads": [], "max_new_tokens": params.max_new_tokens}
    versions = iter(range(1, 1000))

    def new_version() -> None:
        k = next(versions)
        folder = adapter_version_folder(logician, user / f"bench-{k}", 1.0 + 0.25 * k)
        (user / "bench.toml").write_text(STOIC.format(adapter=folder.name), encoding="utf-8")
        use(Catalogue.load(folders_from(str(user))))

    with EmbeddedBroker() as broker:
        s = Settings(
            broker=broker.url, topic_prefix="bench-reg-", app_id="bench-reg", data_dir=work / "data", memory=False
        )
        asyncio.run(create_topics(s))
        env = worker_env(
            s,
            SCENESTREAM_REGISTERS_PATH=str(user),
            SCENESTREAM_MEMORY="false",
            SCENESTREAM_ENGINE=engine,
            SCENESTREAM_LOG_LEVEL="INFO",
        )
        log = open(work / "worker.log", "w")  # noqa: SIM115 - the worker writes to it until stopped
        worker = spawn_worker("tokenizer,scene,decoder", env, log)
        report["worker_log"] = log.name
        try:
            report.update(asyncio.run(_measure(s, loads, rate, seconds, every, params, new_version, say)))
        finally:
            stop_worker(worker, 60)
            log.close()
            use(None)
    return report


async def _measure(s, loads, rate, seconds, every, params, new_version, say) -> dict:
    from scenestream.client import Watcher, publish, publish_paced, raw_text
    from scenestream.registry import change_of
    from scenestream.registry import publish as publish_change
    from scenestream.schemas.records import RegisterChange
    from scenestream.topics import LORA_OUTPUTS, RAW_TEXT, SCENES, TOKENS

    topic = LORA_OUTPUTS.full_name(s)
    watcher = Watcher(s, {topic: LORA_OUTPUTS.schema}, [d.dlq_name(s) for d in (RAW_TEXT, TOKENS, SCENES)])
    await watcher.start()
    out: dict = {}
    try:
        say("waiting for the worker's first answer")
        first = raw_text("Why is the sky blue?", session_id="bench-warm", params=params)
        await publish(s, [first])
        await watcher.wait(first.message_id, topic, timeout=900)

        loaded = []
        for i in range(loads):
            new_version()
            change = change_of("bench", s)
            sent_at = time.time()
            await publish_change(s, change)
            asked: list[str] = []
            found = None
            while found is None and time.time() - sent_at < 300:  # one question at a time, asked again
                record = raw_text(f"Load {i}: what is in our power?", session_id="bench-load", params=params)
                record = record.model_copy(update={"force_register": "bench"})
                await publish(s, [record])
                asked.append(record.message_id)
                got = (await watcher.wait(record.message_id, topic, timeout=300))["lora_output"]
                if got.adapter_version == change.adapter_version:  # else: answered before the change was taken
                    found = (record.message_id, got)
            if found is None:
                raise TimeoutError(f"no answer from {change.adapter_version} within 300 s of publishing it")
            mid, answer = found
            first_piece = watcher.first_partial.get(mid)
            final_at = time.time()
            loaded.append(
                {
                    "version": change.adapter_version,
                    "publish_to_first_piece_ms": round((first_piece - sent_at) * 1000, 1) if first_piece else None,
                    "publish_to_answer_ms": round((final_at - sent_at) * 1000, 1),
                    "asked": len(asked),
                }
            )
            say(f"load {i + 1}/{loads}: {loaded[-1]}")
        out["loads"] = loaded
        firsts = [x["publish_to_first_piece_ms"] for x in loaded if x["publish_to_first_piece_ms"] is not None]
        out["publish_to_first_piece_p50_ms"] = _pct(firsts, 0.5)
        out["publish_to_answer_p50_ms"] = _pct([x["publish_to_answer_ms"] for x in loaded], 0.5)
        out["publish_to_answer_max_ms"] = max(x["publish_to_answer_ms"] for x in loaded)

        async def traffic(label: str, churn: bool) -> dict:
            n = max(1, int(rate * seconds))
            records = [raw_text(f"Traffic {label} {i}: how do rivers find the sea?", session_id=f"bench-{i % 4}",
                                params=params) for i in range(n)]  # fmt: skip
            sent: dict[str, float] = {}
            changes = 0

            async def cycle() -> None:
                nonlocal changes
                removed = False
                while True:
                    await asyncio.sleep(every)
                    if removed:
                        new_version()
                        await publish_change(s, change_of("bench", s))
                    else:
                        await publish_change(s, RegisterChange(name="bench", removed=True))
                    removed = not removed
                    changes += 1

            churner = asyncio.create_task(cycle()) if churn else None
            feeding = asyncio.create_task(publish_paced(s, records, rate, sent))
            first, full, failed = [], [], 0
            for record in records:  # waited for while the others are still being sent: arrival times are real
                while record.message_id not in sent:
                    await asyncio.sleep(0.01)
                try:
                    await watcher.wait(record.message_id, topic, timeout=300)
                except Exception:  # a dead letter or no answer: a failed request
                    failed += 1
                    continue
                full.append((time.time() - sent[record.message_id]) * 1000)
                if record.message_id in watcher.first_partial:
                    first.append((watcher.first_partial[record.message_id] - sent[record.message_id]) * 1000)
            await feeding
            if churner is not None:
                churner.cancel()
            return {
                "requests": n,
                "failed": failed,
                "register_changes": changes,
                "first_token_p50_ms": _pct(first, 0.5),
                "first_token_p99_ms": _pct(first, 0.99),
                "answer_p50_ms": _pct(full, 0.5),
                "answer_p99_ms": _pct(full, 0.99),
            }

        say(f"{rate} request/s for {seconds:.0f} s, quiet")
        quiet = await traffic("quiet", churn=False)
        say(f"{rate} request/s for {seconds:.0f} s, a register published or removed every {every:.0f} s")
        churned = await traffic("churn", churn=True)
        out["cycle"] = {"rate_rps": rate, "seconds": seconds, "every_s": every, "quiet": quiet, "churn": churned}
        if quiet["first_token_p99_ms"] and churned["first_token_p99_ms"]:
            ratio = churned["first_token_p99_ms"] / quiet["first_token_p99_ms"]
            out["cycle"]["first_token_p99_ratio"] = round(ratio, 2)
    finally:
        await watcher.stop()
    return out


def format_report(report: dict) -> str:
    lines = [f"bench registers: engine {report['engine']}, {report['max_new_tokens']} new tokens at most"]
    for load in report.get("loads", []):
        lines.append(
            f"  load {load['version']}: publish → first piece {load['publish_to_first_piece_ms']} ms, "
            f"→ answer {load['publish_to_answer_ms']} ms ({load['asked']} asked)"
        )
    lines.append(
        f"  publish → first piece p50 {report.get('publish_to_first_piece_p50_ms')} ms; "
        f"→ answer p50 {report.get('publish_to_answer_p50_ms')} ms, max {report.get('publish_to_answer_max_ms')} ms"
    )
    cycle = report.get("cycle")
    if cycle:
        for label in ("quiet", "churn"):
            c = cycle[label]
            lines.append(
                f"  {label:6} {c['requests']} requests ({c['failed']} failed, {c['register_changes']} changes): first "
                f"token p50 {c['first_token_p50_ms']} / p99 {c['first_token_p99_ms']} ms, answer p50 "
                f"{c['answer_p50_ms']} / p99 {c['answer_p99_ms']} ms"
            )
        lines.append(f"  first token p99, churn / quiet: {cycle.get('first_token_p99_ratio')}")
    return "\n".join(lines)
