"""``scenestream scene``: LLM-free scenes without a broker.

    scenestream scene "Почему я не чувствую шаг в себе?"      # one scene as JSON
    cat texts.jsonl | scenestream scene > scenes.jsonl          # {"text": ...} per line → one scene per line

Lines are handled in order; a line that is not a JSON object with a non-empty
``text`` gives ``{"error": ..., "line": N}`` on its line and the command goes on.
Lines already waiting on stdin are embedded together (one engine call).
"""

from __future__ import annotations

import hashlib
import json
import select
from typing import IO, Iterator

from scenestream.agents.scene.transform import SceneBuilder
from scenestream.agents.tokenizer.transform import Tokenizer
from scenestream.schemas.codec import SchemaError, to_json
from scenestream.schemas.records import RawText
from scenestream.settings import Settings

BATCH = 64


def _message_id(text: str) -> str:
    # same text, same message id, same scene_id: the command is deterministic
    return "cli-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def scene_for(item: dict, tokenizer: Tokenizer, lineno: int) -> RawText:
    if not isinstance(item, dict):
        raise SchemaError(f"line {lineno}: expected a JSON object, got {type(item).__name__}")
    text = item.get("text")
    if not isinstance(text, str):
        raise SchemaError(f"line {lineno}: no string field 'text'")
    raw = RawText(message_id=str(item.get("message_id") or _message_id(text)),
                  session_id=str(item.get("session_id") or "cli"), tenant=str(item.get("tenant") or "default"),
                  text=text, source="cli")
    tokenizer.check(raw.text)
    return raw


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
    tokenizer = Tokenizer.from_settings(settings)
    builder = SceneBuilder(embedder_name=settings.scene_embedder)
    errors = 0
    for chunk in _chunks(stream):
        slots: list[object] = []
        todo = []
        for lineno, line in chunk:
            if not line.strip():
                slots.append({"error": "empty line", "line": lineno})
                continue
            try:
                raw = scene_for(json.loads(line), tokenizer, lineno)
                tokens = tokenizer.tokenize(raw)
            except json.JSONDecodeError as exc:
                slots.append({"error": f"invalid JSON: {exc.msg}", "line": lineno})
                continue
            except SchemaError as exc:
                slots.append({"error": exc.reason, "line": lineno})
                continue
            slots.append(tokens)
            todo.append(tokens)
        scenes = iter(builder.build(todo))
        for slot in slots:
            if isinstance(slot, dict):
                errors += 1
                out.write(json.dumps(slot, ensure_ascii=False) + "\n")
            else:
                out.write(to_json(next(scenes)) + "\n")
        out.flush()
    return errors


def one_scene(text: str, settings: Settings):
    tokenizer = Tokenizer.from_settings(settings)
    raw = scene_for({"text": text}, tokenizer, 1)
    return SceneBuilder(embedder_name=settings.scene_embedder).build([tokenizer.tokenize(raw)])[0]
