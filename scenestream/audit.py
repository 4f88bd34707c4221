"""Audit and replay of scene histories.

    scenestream trace MESSAGE_ID [--json]     # everything that happened to one message
    scenestream history --session S           # a session's scenes, in order
    scenestream replay --session S [--register R] [--engine E] [--since T] [--versions current|answered|both]

The archive (Qdrant Edge under the data directory, or SCENESTREAM_QDRANT_URL)
holds each scene with its resonance, echoes and answer; the topics, while
they still hold them, add the raw text, tokens, memory events and dead
letters. Replays run the archived scenes through the decoder again, in their
original order; their outputs carry ``replay_of`` and the archive is never
written.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

from scenestream.schemas.codec import SchemaError, decode
from scenestream.schemas.records import DeadLetter, LoraOutput, Scene
from scenestream.settings import Settings


def open_settings_archive(settings: Settings):
    from scenestream.agents.memory.archive import open_archive

    return open_archive(settings.data_dir, settings.qdrant_url)


def archived_scene(archive, message_id: str, settings: Settings) -> Optional[dict]:
    from scenestream.agents.scene.transform import SceneModel, model_folder, scene_id_for

    model = SceneModel.load(settings.scene_embedder, model_folder(settings))
    # by its id under the scene model in use; else (made before a router head was refitted) by its message id
    return archive.get(scene_id_for(message_id, model.version)) or archive.by_message(message_id)


async def from_topics(settings: Settings, message_id: str) -> dict[str, list[dict]]:
    """Every record of ``message_id`` still on the pipeline topics and their dead-letter topics, read with one
    consumer up to each partition's end as it was when the call began: topic → its entries (offset,
    partition, timestamp_ms, record)."""
    from scenestream.client import read_topics
    from scenestream.topics import PIPELINE

    schemas: dict[str, type] = {}
    for decl in PIPELINE:
        schemas[decl.full_name(settings)] = decl.schema
        if decl.has_dlq:
            schemas[decl.dlq_name(settings)] = DeadLetter
    found: dict[str, list[dict]] = {}
    async for record in read_topics(settings, list(schemas)):
        try:
            item = decode(record.value, schemas[record.topic])
        except SchemaError:
            continue
        if getattr(item, "message_id", None) == message_id:
            found.setdefault(record.topic, []).append(
                {
                    "offset": record.offset,
                    "partition": record.partition,
                    "timestamp_ms": record.timestamp,
                    "record": item,
                }
            )
    return found


def trace(message_id: str, settings: Settings, broker: Optional[Settings]) -> dict:
    result: dict = {"message_id": message_id, "archive": None, "topics": {}}
    try:
        archive = open_settings_archive(settings)
    except ValueError as exc:  # Qdrant Edge is held by the running stack: say so, and read the topics
        result["archive_error"] = (
            f"{exc} (a running stack holds the embedded archive; stop it, or use a Qdrant "
            f"server with SCENESTREAM_QDRANT_URL)"
        )
    else:
        try:
            result["archive"] = archived_scene(archive, message_id, settings)
        finally:
            archive.close()
    if broker is not None:
        result["topics"] = asyncio.run(from_topics(broker, message_id))
    timings: dict = {}
    for entries in result["topics"].values():
        for entry in entries:
            timings.update(getattr(entry["record"], "timings_ms", {}) or {})
    if result["archive"]:
        timings.update(result["archive"].get("timings_ms", {}))
        timings.update({f"answer.{k}": v for k, v in (result["archive"].get("answer_timings_ms") or {}).items()})
    result["timings_ms"] = timings
    if result["archive"] is None and not result["topics"]:
        raise LookupError(
            result.get("archive_error") or f"message {message_id} is neither in the archive nor on the topics"
        )
    return result


def history(session: str, settings: Settings, since_ms: Optional[int] = None) -> list[dict]:
    archive = open_settings_archive(settings)
    try:
        return archive.history(session, since_ms=since_ms)
    finally:
        archive.close()


VERSIONS = ("current", "answered", "both")


def readable(row: dict) -> dict:
    """An archived scene as a :class:`Scene` can be read from it today: its ranked registers without those the
    catalogue no longer holds (removed since; a record's names are checked against the catalogue in use). Its
    own ``register`` stays what it was: a replay answers it with the base model when its adapter is gone."""
    from scenestream.schemas.registers import catalogue

    known = catalogue()
    ranked = row.get("registers") or []
    kept = [w for w in ranked if isinstance(w, dict) and w.get("name") in known]
    return row if len(kept) == len(ranked) else {**row, "registers": kept}


def replay(
    session: str,
    settings: Settings,
    register: Optional[str] = None,
    engine: Optional[str] = None,
    since_ms: Optional[int] = None,
    versions: str = "current",
) -> list[dict]:
    """Old and new answers of a session's archived scenes, in order. ``versions``: ``current`` answers with the
    adapters served now (``new``); ``answered`` with the adapter version each scene was answered with
    (``answered``: None, and ``answered_note`` why, where that version is not kept here or none was recorded);
    ``both`` gives both, side by side."""
    from scenestream.agents.decoder.engines import adapters_in, make_engine
    from scenestream.agents.decoder.transform import Decoder
    from scenestream.registry import find_version

    if versions not in VERSIONS:
        raise ValueError(f"versions is one of {', '.join(VERSIONS)}, not {versions!r}")
    if register is not None and versions != "current":
        raise ValueError("--register answers with today's adapter of that register: use it with --versions current")
    rows = history(session, settings, since_ms)
    if not rows:
        raise LookupError(f"no archived scenes for session {session!r}")
    scenes = []
    for row in rows:
        scene = Scene.model_validate(readable(row))
        scenes.append(
            scene.model_copy(update={"replay_of": scene.message_id, "force_register": register or scene.force_register})
        )
    decoder = Decoder(make_engine(settings, engine))

    def decode(chosen: list[int]) -> dict[int, LoraOutput]:
        outputs: list[LoraOutput] = []
        for i in range(0, len(chosen), 16):
            outputs += decoder.decode([scenes[j] for j in chosen[i : i + 16]])
        return dict(zip(chosen, outputs))

    out = [
        {
            "scene_id": row["scene_id"],
            "message_id": row["message_id"],
            "ts_ms": row["ts_ms"],
            "text": row["text"],
            "old": {
                "register": row.get("answer_register"),
                "adapter_version": row.get("answer_adapter_version"),
                "text": row.get("answer"),
            },
        }
        for row in rows
    ]
    if versions in ("current", "both"):
        for i, answer in decode(list(range(len(rows)))).items():
            out[i]["new"] = answer
    if versions in ("answered", "both"):
        sync = getattr(decoder.engine, "sync_adapters", None)
        if sync is None:
            raise ValueError(f"the {decoder.engine.name} engine cannot serve other adapter versions")
        now = adapters_in(settings)
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            out[i]["answered"] = None
            version = row.get("answer_adapter_version")
            folder = find_version(version, settings) if version else None
            if folder is None:
                out[i]["answered_note"] = (
                    f"{version} is not kept here (neither its register's folder nor the adapter store has it)"
                    if version
                    else "no adapter version was recorded for its answer (the base model, or answered before v4)"
                )
                continue
            name = version.split("@", 1)[0]
            groups.setdefault((name, str(folder)), []).append(i)
        try:
            for (name, folder), chosen in groups.items():
                sync({**now, name: Path(folder)})
                for i, answer in decode(chosen).items():
                    out[i]["answered"] = answer
        finally:
            sync(now)
    return out
