"""``scenestream scene``: LLM-free scenes without a broker.

    scenestream scene "Почему я не чувствую шаг в себе?"      # one scene as JSON
    cat texts.jsonl | scenestream scene > scenes.jsonl          # {"text": ...} per line → one scene per line

Lines are handled in order; a line that is not a JSON object with a non-empty
``text`` gives ``{"error": ..., "line": N}`` on its line and the command goes on.
Lines already waiting on stdin are embedded together (one engine call).
"""

from __future__ import annotations

import json
import select
from typing import IO, Iterator

from scenestream.offline import BATCH, offline_message_id, scene_path, scenes_for
from scenestream.schemas.codec import SchemaError, to_json
from scenestream.schemas.records import RawText
from scenestream.settings import Settings


def raw_text_of(item: dict, lineno: int) -> RawText:
    if not isinstance(item, dict):
        raise SchemaError(f"line {lineno}: expected a JSON object, got {type(item).__name__}")
    text = item.get("text")
    if not isinstance(text, str):
        raise SchemaError(f"line {lineno}: no string field 'text'")
    return RawText(message_id=str(item.get("message_id") or offline_message_id(text)),
                   session_id=str(item.get("session_id") or "cli"), tenant=str(item.get("tenant") or "default"),
                   text=text, source="cli")


def _chunks(stream: IO[str]) -> Iterator[list[tuple[int, str]]]:
    """Lines in order, grouped by what is already waiting (at most BATCH)."""
    chunk: list[tuple[int, str]] = []
    for lineno, line in enumerate(stream, start=1):
        chunk.append((lineno, line))
        waiting = False
        try:
            waiting = bool(select.select([stream], [], [], 0)[0])
        except (ValueError, OSError, TypeError):  # not a real file (tests, StringIO): just batch
            waiting = True
        if len(chunk) >= BATCH or not waiting:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_lines(stream: IO[str], out: IO[str], settings: Settings) -> int:
    """Scene per input line; returns the number of error lines."""
    path = scene_path(settings)
    errors = 0
    for chunk in _chunks(stream):
        slots: list[object] = []
        todo = []
        for lineno, line in chunk:
            if not line.strip():
                slots.append({"error": "empty line", "line": lineno})
                continue
            try:
                tokens = path.tokenize(raw_text_of(json.loads(line), lineno))
            except json.JSONDecodeError as exc:
                slots.append({"error": f"invalid JSON: {exc.msg}", "line": lineno})
                continue
            except SchemaError as exc:
                slots.append({"error": exc.reason, "line": lineno})
                continue
            slots.append(tokens)
            todo.append(tokens)
        scenes = iter(path.build(todo))
        for slot in slots:
            if isinstance(slot, dict):
                errors += 1
                out.write(json.dumps(slot, ensure_ascii=False) + "\n")
            else:
                out.write(to_json(next(scenes)) + "\n")
        out.flush()
    return errors


def one_scene(text: str, settings: Settings):
    return scenes_for([text], settings, session_id="cli")[0]
