"""Audit: what happened to a message, a session's scenes, and their answers replayed.

    scenestream trace MESSAGE_ID [--json]
    scenestream history --session S [--since T] [--json]
    scenestream replay --session S [--register R] [--engine E] [--since T] [--json]

The data come from :mod:`scenestream.audit`; this module renders them.
"""

from __future__ import annotations

from typing import Literal, Optional

import typer

from scenestream.commands.common import (
    REGISTER_HELP,
    EngineName,
    fail,
    json_option,
    print_json,
    progress_to_stderr,
    register_choice,
)
from scenestream.settings import get_settings

HELD = "(a running stack holds the embedded archive: stop it, or use SCENESTREAM_QDRANT_URL)"


def render_trace(result: dict) -> str:
    """The human view of a :func:`scenestream.audit.trace` result."""
    archived = result["archive"]
    lines = [f"message {result['message_id']}"]
    if archived:
        lines.append(
            f"  scene {archived['scene_id']} {archived['delta_code']} {archived['register']} "
            f"session {archived['session_id']}: {archived['text']}"
        )
        lines.append(f"  linkage {archived['linkage']}  resonance {archived.get('resonance', 0)}")
        if archived.get("answer"):
            lines.append(f"  answer ({archived.get('answer_adapter')}): {archived['answer']}")
    for topic, entries in result["topics"].items():
        for entry in entries:
            record = entry["record"]
            summary = getattr(record, "event", None) or getattr(record, "stage", None) or getattr(record, "reason", "")
            if getattr(record, "final", None) is not None:  # an answer: streamed piece or the whole one
                summary = (
                    f"final ({record.completion_tokens} tokens)"
                    if record.final
                    else f"partial {record.seq}: {record.text!r}"
                )
            lines.append(f"  {topic}[{entry['partition']}]@{entry['offset']}  {type(record).__name__} {summary}")
    lines.append("  timings ms: " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_ms"].items()))
    return "\n".join(lines)


def history_line(row: dict) -> str:
    return (
        f"{row['ts_ms']} {row['message_id']} {row['delta_code']:>4} {row['register']:11} "
        f"res {row.get('resonance', 0):.2f}  {row['text'][:60]}  →  {(row.get('answer') or '')[:60]}"
    )


def replay_lines(row: dict) -> str:
    old = row["old"]
    lines = [
        f"— {row['message_id']}: {row['text']}",
        f"  old [{old['register']}/{old.get('adapter_version') or '?'}]: {old['text']}",
    ]
    if "new" in row:
        new = row["new"]
        lines.append(f"  new [{new.register}/{new.adapter_version or new.adapter}]: {new.text}")
    if "answered" in row:
        again = row["answered"]
        lines.append(
            f"  answered version again [{again.adapter_version}]: {again.text}"
            if again is not None
            else f"  answered version again: — ({row['answered_note']})"
        )
    return "\n".join(lines)


def trace(
    message_id: str = typer.Argument(..., help="The message id that ask / ingest printed."),
    as_json: bool = json_option("Print one JSON document {message_id, archive, topics, timings_ms}."),
) -> None:
    """Audit one message: raw text, tokens, scene, resonance and echoes, the answer, memory events, timings."""
    from scenestream.audit import trace as run_trace
    from scenestream.broker import reachable

    try:
        result = run_trace(message_id, get_settings(), reachable(get_settings()))
    except LookupError as exc:
        fail(str(exc))
    if "archive_error" in result and not as_json:  # with --json it is a field of the document
        typer.secho(f"  archive not read: {result['archive_error']}", err=True, fg=typer.colors.YELLOW)
    if as_json:
        print_json(result)
    else:
        typer.echo(render_trace(result))


def history(
    session: str = typer.Option(..., "--session", "-s", help="Session id."),
    since: Optional[int] = typer.Option(None, help="Only scenes at or after this time (ms since the epoch)."),
    as_json: bool = json_option("Print one JSON array of the archived scenes."),
) -> None:
    """A session's archived scenes in order."""
    from scenestream.audit import history as run_history

    try:
        rows = run_history(session, get_settings(), since)
    except ValueError as exc:
        fail(f"{exc} {HELD}")
    if not rows:
        typer.echo(f"no archived scenes for session {session}", err=True)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        typer.echo(history_line(row))


def replay(
    session: str = typer.Option(..., "--session", "-s", help="Session id."),
    register: Optional[str] = typer.Option(
        None, callback=register_choice, help=f"Answer every scene with this register's adapter: {REGISTER_HELP}."
    ),
    engine: Optional[EngineName] = typer.Option(None, help="Decoder engine (default: SCENESTREAM_ENGINE)."),
    since: Optional[int] = typer.Option(None, help="Only scenes at or after this time (ms since the epoch)."),
    versions: Literal["current", "answered", "both"] = typer.Option(
        "current",
        help="current: today's adapters; answered: the adapter version each scene was answered with (from the "
        "register's folder or the adapter store); both: side by side.",
    ),
    as_json: bool = json_option("Print one JSON array of {scene_id, message_id, ts_ms, text, old, new, answered}."),
) -> None:
    """Re-run a session's archived scenes through the decoder; old and new answers side by side."""
    from scenestream.audit import replay as run_replay

    if register is not None and versions != "current":
        fail("--register answers with today's adapter of that register: use it with --versions current", 2)
    try:
        with progress_to_stderr():
            rows = run_replay(session, get_settings(), register, engine, since, versions)
    except LookupError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"{exc} {HELD}")
    if as_json:
        print_json(rows)
        return
    for row in rows:
        typer.echo(replay_lines(row))
