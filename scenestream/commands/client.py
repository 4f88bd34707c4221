"""Asking the pipeline: ``ask`` (the whole pipeline, streamed) and ``scene`` (LLM-free, no broker).

    scenestream ask "текст" [--session S] [--register R] [--json]
    scenestream ask "текст" --image scene.svg --voice answer.wav --formula    # and the outputs beyond text
    scenestream scene "Почему я не чувствую шаг в себе?"        # one scene as one JSON document
    scenestream scene "тишина" --image scene.png --formula       # + its picture, its formula line
    cat texts.jsonl | scenestream scene > scenes.jsonl          # {"text": ...} per line → one scene per line
    cat texts.jsonl | scenestream scene --image out/s.svg       # + out/s-1.svg, out/s-2.svg, … (by input line)

``scene`` over stdin handles lines in order; a line that is not a JSON object with a non-empty
``text`` gives ``{"error": ..., "line": N}`` on its line and the command goes on. Lines already
waiting on stdin are embedded together (one engine call).

The outputs (scenestream.outputs): ``--image FILE`` (.svg or .png), ``--voice FILE`` (.wav or .ogg, ``ask``
only) and ``--formula``. What can be checked cheaply is checked before any work: the suffix and the
path by the option parser (exit 2), cairo for PNG and espeak-ng for the voice before the pipeline starts
(exit 1). An output that fails after the work is done does not take the result with it: the answer and
scene are printed (with --json the document has the output as null and ``errors: {output: reason}``),
then one ``error: <output>: <reason>`` line per failed output on stderr, and the exit status is 1.
"""

from __future__ import annotations

import asyncio
import json
import select
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Optional

import typer

from scenestream.commands.common import REGISTER_HELP, fail, json_option, print_json, register_choice
from scenestream.settings import Settings, get_settings

if TYPE_CHECKING:
    from scenestream.schemas.records import LoraOutput, RawText, Scene


# ------------------------------------------------------------------------------------------------- outputs


def output_path(kind: str) -> Callable[[Any], Any]:
    """The option parser's check of an output file: its suffix names a format of ``kind``, and it can be written
    (a wrong one exits 2, before any work)."""

    def check(value: Optional[Path]) -> Optional[Path]:
        if value is None:
            return None
        from scenestream.outputs.files import check_target

        try:
            check_target(value, kind)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        return value

    return check


def image_option(help: str) -> Any:
    return typer.Option(None, "--image", metavar="FILE", callback=output_path("image"), help=help)


def formula_option(help: str) -> Any:
    return typer.Option(False, "--formula", help=help)


def require_outputs(image: Optional[Path] = None, voice: Optional[Path] = None) -> None:
    """Exit 1 now, before any work, when this machine cannot make an output asked for (cairo, espeak-ng)."""
    from scenestream.outputs.files import OutputFailed, output_format, require_tools

    try:
        for kind, path in (("image", image), ("voice", voice)):
            if path is not None:
                require_tools(kind, output_format(path, kind))
    except OutputFailed as exc:
        fail(str(exc))


def report_output_errors(errors: dict) -> None:
    """One ``error: <output>: <reason>`` line on stderr per failed output, then exit 1 (none failed: nothing)."""
    for kind, reason in errors.items():
        typer.secho(f"error: {kind}: {reason}", err=True, fg=typer.colors.RED)
    if errors:
        raise typer.Exit(1)


def render_outputs(fields: dict) -> str:
    """The outputs made, as lines of ``ask``'s human view (a failed one is left out: its error says why)."""
    labels = {"formula": "formula:", "image": "image:", "voice": "voice:"}
    return "\n".join(f"{labels[kind]:<13}{value}" for kind, value in fields.items() if value is not None)


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
    image: Optional[Path] = image_option(
        "Write the scene's field picture to FILE: .svg or .png, by the suffix (JSON: 'image', the path)."
    ),
    voice: Optional[Path] = typer.Option(
        None,
        "--voice",
        metavar="FILE",
        callback=output_path("voice"),
        help="Write the answer spoken (espeak-ng, paced by the field) to FILE: .wav or .ogg, by the suffix "
        "(JSON: 'voice', the path).",
    ),
    formula: bool = formula_option("Print the scene's formula line (JSON: 'formula')."),
) -> None:
    """One thought through the whole pipeline; uses a running stack or starts the embedded one. Without --json
    the answer streams as it comes, then the scene and timings.

    --image, --voice and --formula add the scene's picture, the answer spoken and the scene's formula line.
    A wrong suffix or a path that cannot be written exits 2 before anything runs; a missing espeak-ng (or
    cairo for .png) exits 1 before the pipeline starts. An output that fails after the answer came (a full
    disk, espeak-ng failing) does not lose the answer: it is printed (in --json the output is null and
    'errors' gives the reason), then one 'error: <output>: …' line on stderr, and the exit status is 1."""
    require_outputs(image, voice)
    from scenestream.ask import ask_once

    streamed: list[str] = []
    ended: list[str] = []  # the answer's text once its line is ended on screen

    def show(piece) -> None:  # the answer as it streams
        if not streamed:
            typer.echo(answer_head(piece))
        streamed.append(piece.text)
        typer.echo(piece.text, nl=False)
        sys.stdout.flush()

    def end(output) -> None:  # the answer's rest and its line's end, before the stack (and its engine) stops
        so_far = "".join(streamed)
        if streamed and output.text.startswith(so_far):
            typer.echo(output.text[len(so_far) :] + "\n")
            ended.append(output.text)

    human = {} if as_json else {"on_piece": show, "on_answer": end}
    try:
        result = asyncio.run(ask_once(text, session, timeout, register=register, **human))
    except Exception as exc:  # a clear message instead of a traceback
        if streamed and not ended:  # end the answer's line, unless end() has
            typer.echo("")
        fail(f"{type(exc).__name__}: {exc}")
    fields, errors = {}, {}
    if image is not None or voice is not None or formula:
        from scenestream.outputs.files import make_outputs

        fields, errors = make_outputs(
            result.get("scene"), result.get("output"), image=image, voice=voice, formula=formula
        )
    if as_json:
        print_json({**result, **fields, **({"errors": errors} if errors else {})})
        report_output_errors(errors)
        return
    output = result.get("output")
    if output is not None and ended == [output.text]:  # already on screen
        typer.echo(render(result, answer=False))
    else:
        if streamed:
            typer.echo("")
        typer.echo(render(result))
    if any(value is not None for value in fields.values()):
        typer.echo(render_outputs(fields))
    report_output_errors(errors)


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


class LinesDone(NamedTuple):
    """What :func:`run_lines` did: ``errors`` input lines refused, ``failed_outputs`` scene lines whose
    formula or image could not be made (their ``errors`` field says why)."""

    errors: int
    failed_outputs: int


def scene_document(scene: Scene, image: Optional[Path] = None, formula: bool = False) -> tuple[dict, dict]:
    """The scene as its JSON object with the outputs asked for (``formula``, ``image``: the path written;
    a failed one is null and named in ``errors``), and the errors."""
    from scenestream.schemas.codec import to_jsonable

    doc = to_jsonable(scene)
    if image is None and not formula:
        return doc, {}
    from scenestream.outputs.files import make_outputs

    fields, errors = make_outputs(scene, image=image, formula=formula)
    doc.update(fields)
    if errors:
        doc["errors"] = errors
    return doc, errors


def run_lines(
    stream: IO[str], out: IO[str], settings: Settings, image: Optional[Path] = None, formula: bool = False
) -> LinesDone:
    """Scene per input line (with its ``formula``, and its picture written to ``image`` numbered by the input
    line: ``s.svg`` → ``s-3.svg`` for line 3); returns the counts of refused lines and of failed outputs."""
    from scenestream.offline import BATCH, scene_path
    from scenestream.outputs.files import numbered
    from scenestream.schemas.codec import SchemaError, to_json

    path = scene_path(settings)
    errors = failed = 0
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
            slots.append((lineno, tokens))
            todo.append(tokens)
        scenes = iter(path.build(todo))
        for slot in slots:
            if isinstance(slot, dict):
                errors += 1
                out.write(json.dumps(slot, ensure_ascii=False) + "\n")
                continue
            lineno, _ = slot
            picture = numbered(image, lineno) if image is not None else None
            doc, failures = scene_document(next(scenes), picture, formula)
            failed += bool(failures)
            out.write(to_json(doc) + "\n")
        out.flush()
    return LinesDone(errors, failed)


def one_scene(text: str, settings: Settings):
    from scenestream.offline import scenes_for

    return scenes_for([text], settings, session_id="cli")[0]


def scene(
    text: Optional[str] = typer.Argument(None, help="A text; without it, JSON lines with a 'text' field from stdin."),
    as_json: bool = json_option("Accepted for uniformity: the scene is a record and always prints as JSON."),
    image: Optional[Path] = image_option(
        "Write the scene's field picture to FILE: .svg or .png, by the suffix; the scene gets an 'image' field "
        "(the path). Over stdin one picture per scene, numbered by its input line: s.svg → s-1.svg, s-2.svg, …"
    ),
    formula: bool = formula_option("Add the scene's formula line to the scene as a 'formula' field."),
) -> None:
    """LLM-free scene, no broker needed: TEXT → one scene as one JSON document; stdin is a stream, JSON lines in
    → one scene (or {"error", "line"}) JSON line out per line, in order.

    --image and --formula add the scene's picture and its formula line as fields of each scene. A wrong
    suffix or a path that cannot be written exits 2, a .png without cairo exits 1, before any scene is made.
    An output that fails later is null in its scene, named in the scene's 'errors', and makes the exit
    status 1 (the scene is still printed; over stdin the other lines go on)."""
    from scenestream.schemas.codec import SchemaError

    require_outputs(image)
    s = get_settings()
    if text is not None:
        try:
            doc, errors = scene_document(one_scene(text, s), image, formula)
        except SchemaError as exc:
            fail(exc.reason, 2)
        print_json(doc)
        report_output_errors(errors)
        return
    if sys.stdin.isatty():
        typer.echo("reading JSON lines from stdin (Ctrl-D to end)…", err=True)
    done = run_lines(sys.stdin, sys.stdout, s, image, formula)
    if done.failed_outputs:
        fail(f"{done.failed_outputs} scene(s) lack an output asked for: their 'errors' field says why")
