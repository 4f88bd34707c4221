"""Asking the pipeline: ``ask`` (the whole pipeline, streamed) and ``scene`` (LLM-free, no broker).

    scenestream ask "текст" [--session S] [--register R] [--json]
    scenestream scene "Почему я не чувствую шаг в себе?"        # one scene as one JSON document
    cat texts.jsonl | scenestream scene > scenes.jsonl          # {"text": ...} per line → one scene per line

``scene`` over stdin handles lines in order; a line that is not a JSON object with a non-empty
``text`` gives ``{"error": ..., "line": N}`` on its line and the command goes on. Lines already
waiting on stdin are embedded together (one engine call).
"""

from __future__ import annotations

import asyncio
import json
import select
import sys
from typing import IO, TYPE_CHECKING, Iterator, Optional

import typer

from scenestream.commands.common import REGISTER_HELP, fail, json_option, print_json, register_choice
from scenestream.settings import Settings, get_settings

if TYPE_CHECKING:
    from scenestream.schemas.records import LoraOutput, RawText


# ----------------------------------------------------------------------------------------------------- ask


def answer_head(output: LoraOutput) -> str:
    return f"{output.symbol or ''} {output.register} ({output.adapter} adapter, {output.engine}):"


def render(result: dict, answer: bool = True) -> str:
    """The human view of an ``ask`` result (``answer=False``: all but the answer's text, already streamed)."""
    lines = [
        f"message {result['message_id']}  session {result['session_id']}  ({result['stack']} stack, "
        f"{result['timings']['pipeline_ms']:.0f} ms through the pipeline)"
    ]
    scene = result.get("scene")
    if scene is not None:
        registers = ", ".join(f"{r.name} {r.weight:.2f}" for r in scene.registers if r.weight >= 0.05)
        f = scene.field
        lines += [
            f"scene:       {scene.scene_id}  {scene.delta_code}  ({scene.lang})",
            f"linkage:     {scene.linkage}",
            "hypertokens: " + ", ".join(f"{h.text} ({h.weight:.2f})" for h in scene.hypertokens),
            f"field:       valence {f.valence:+.2f}  arousal {f.arousal:.2f}  tension {f.tension:.2f}  "
            f"rhythm {f.rhythm}",
            f"registers:   {registers}  → {scene.register}",
        ]
        if scene.stage == "resonated":
            echoes = ", ".join(f"{e.get('scene_id', '?')[:8]} ({e.get('score', 0):.2f})" for e in scene.echoes)
            lines.append(
                f"resonance:   {scene.resonance:.2f}"
                + (f"  echoes: {echoes}" if echoes else "")
                + (f"  symbol {scene.symbol}" if scene.symbol else "")
            )
    output = result.get("output")
    if output is not None:
        first = output.timings_ms.get("first_token")
        piece = result["timings"].get("first_piece_ms")
        stats = [f"{output.completion_tokens} tokens"] + ([f"first token {first:.0f} ms"] if first is not None else [])
        stats += [f"first piece here after {piece:.0f} ms"] if piece is not None else []
        if answer:
            lines += ["", answer_head(output), output.text]
        lines.append(f"answer:      {', '.join(stats)}")
    return "\n".join(lines)


def ask(
    text: str = typer.Argument(..., help="The text to think about."),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id (keeps one conversation)."),
    as_json: bool = json_option(
        "Print one JSON document {message_id, session_id, stack, scene, output, timings} "
        "when the answer is complete (nothing streamed)."
    ),
    timeout: float = typer.Option(300.0, help="Seconds to wait for the answer."),
    register: Optional[str] = typer.Option(None, callback=register_choice, help=f"Force the adapter: {REGISTER_HELP}."),
) -> None:
    """One thought through the whole pipeline; uses a running stack or starts the embedded one. Without --json
    the answer streams as it comes, then the scene and timings."""
    from scenestream.ask import ask_once

    streamed: list[str] = []

    def show(piece) -> None:  # the answer as it streams
        if not streamed:
            typer.echo(answer_head(piece))
        streamed.append(piece.text)
        typer.echo(piece.text, nl=False)
        sys.stdout.flush()

    try:
        result = asyncio.run(ask_once(text, session, timeout, register=register, on_piece=None if as_json else show))
    except Exception as exc:  # a clear message instead of a traceback
        if streamed:
            typer.echo("")
        fail(f"{type(exc).__name__}: {exc}")
    if as_json:
        print_json(result)
        return
    output = result.get("output")
    so_far = "".join(streamed)
    if output is not None and streamed and output.text.startswith(so_far):
        typer.echo(output.text[len(so_far) :] + "\n")
        typer.echo(render(result, answer=False))
    else:
        if streamed:
            typer.echo("")
        typer.echo(render(result))


# --------------------------------------------------------------------------------------------------- scene


def raw_text_of(item: dict, lineno: int) -> RawText:
    from scenestream.offline import offline_message_id
    from scenestream.schemas.codec import SchemaError
    from scenestream.schemas.records import RawText

    if not isinstance(item, dict):
        raise SchemaError(f"line {lineno}: expected a JSON object, got {type(item).__name__}")
    text = item.get("text")
    if not isinstance(text, str):
        raise SchemaError(f"line {lineno}: no string field 'text'")
    return RawText(
        message_id=str(item.get("message_id") or offline_message_id(text)),
        session_id=str(item.get("session_id") or "cli"),
        tenant=str(item.get("tenant") or "default"),
        text=text,
        source="cli",
    )


def _chunks(stream: IO[str], batch: int) -> Iterator[list[tuple[int, str]]]:
    """Lines in order, grouped by what is already waiting (at most ``batch``)."""
    chunk: list[tuple[int, str]] = []
    for lineno, line in enumerate(stream, start=1):
        chunk.append((lineno, line))
        waiting = False
        try:
            waiting = bool(select.select([stream], [], [], 0)[0])
        except (ValueError, OSError, TypeError):  # not a real file (tests, StringIO): just batch
            waiting = True
        if len(chunk) >= batch or not waiting:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_lines(stream: IO[str], out: IO[str], settings: Settings) -> int:
    """Scene per input line; returns the number of error lines."""
    from scenestream.offline import BATCH, scene_path
    from scenestream.schemas.codec import SchemaError, to_json

    path = scene_path(settings)
    errors = 0
    for chunk in _chunks(stream, BATCH):
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
    from scenestream.offline import scenes_for

    return scenes_for([text], settings, session_id="cli")[0]


def scene(
    text: Optional[str] = typer.Argument(None, help="A text; without it, JSON lines with a 'text' field from stdin."),
    as_json: bool = json_option("Accepted for uniformity: the scene is a record and always prints as JSON."),
) -> None:
    """LLM-free scene, no broker needed: TEXT → one scene as one JSON document; stdin is a stream, JSON lines in
    → one scene (or {"error", "line"}) JSON line out per line, in order."""
    from scenestream.schemas.codec import SchemaError

    s = get_settings()
    if text is not None:
        try:
            print_json(one_scene(text, s))
        except SchemaError as exc:
            fail(exc.reason, 2)
        return
    if sys.stdin.isatty():
        typer.echo("reading JSON lines from stdin (Ctrl-D to end)…", err=True)
    run_lines(sys.stdin, sys.stdout, s)
