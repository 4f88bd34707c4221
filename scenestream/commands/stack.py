"""The stack: run its workers, its broker, feed it, watch it, declare its topics, show its settings.

scenestream run [--stages tokenizer,scene] [--stages decoder]   # workers until Ctrl-C
scenestream broker                                               # the embedded broker alone
scenestream ingest [TEXT] [--session S] [--json]                 # publish texts (stdin: lines or JSON lines)
scenestream tail TOPIC [-f] [--from-end]                         # a topic as JSON lines (a stream)
scenestream topics list|create [--json]
scenestream settings [--json]
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Optional

import typer

from scenestream.commands.common import (
    connected_settings,
    fail,
    json_option,
    print_human,
    print_json,
    stages_choice,
)
from scenestream.settings import describe_settings, get_settings

topics_app = typer.Typer(help="Topic declarations and their creation.", no_args_is_help=True)


def settings(as_json: bool = json_option()) -> None:
    """List every SCENESTREAM_ setting with its current value and what it does."""
    rows = describe_settings()
    if as_json:
        print_json({name: {"value": value, "meaning": doc} for name, value, doc in rows})
        return
    from rich.table import Table

    table = Table("variable", "value", "meaning", show_lines=False)
    for name, value, doc in rows:
        table.add_row(name, value, doc)
    print_human(table)


def broker(
    port: int = typer.Option(0, min=0, max=65535, help="Loopback port to listen on (0: a free one)."),
) -> None:
    """Run the embedded Tansu broker alone (for other processes) until Ctrl-C; prints its address on stderr.

    SCENESTREAM_BROKER_STORAGE=memory (the default) keeps messages in memory: gone when it stops or crashes;
    disk keeps them under SCENESTREAM_DATA_DIR/broker (Tansu's s3 engine over s3rver)."""
    from scenestream.broker import EmbeddedBroker, publish_address, withdraw_address
    from scenestream.topics import create_topics

    # Python leaves SIGINT ignored when it starts ignored (a background job of a script, `nohup … &`);
    # "until Ctrl-C" must hold however the broker was started, from its start on
    signal.signal(signal.SIGINT, signal.default_int_handler)
    s = get_settings()
    with EmbeddedBroker.from_settings(s, port=port) as embedded:
        s = s.model_copy(update={"broker": embedded.url})
        asyncio.run(create_topics(s))
        publish_address(s, embedded.url, role="broker")
        typer.echo(f"embedded broker on {embedded.url}  (export SCENESTREAM_BROKER={embedded.url})", err=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit unwinds and stops the broker
        try:
            while embedded.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            withdraw_address(s)


def run(
    stages: Optional[list[str]] = typer.Option(
        None,
        "--stages",
        callback=stages_choice,
        metavar="STAGE[,STAGE…]",
        help="Stages to run, comma-separated or the option repeated (default: all; the names of "
        "scenestream/topology.py STAGE_NAMES). Workers running the same stage share its partitions.",
    ),
) -> None:
    """Run stage workers until Ctrl-C (all stages in one worker by default); prints no result."""
    from scenestream.agents.memory.archive import ArchiveBusy
    from scenestream.broker import broker_for, publish_address, withdraw_address
    from scenestream.runtime import run_worker, select_stages

    base = get_settings()
    try:
        chosen = select_stages(stages, base)
    except ValueError as exc:  # a declared stage the runtime does not build
        fail(str(exc), 2)
    with broker_for(base) as s:
        if not base.broker:
            publish_address(s, s.broker, role="stack")
            typer.echo(f"embedded broker on {s.broker}", err=True)
        typer.echo(f"running stages: {', '.join(spec.name for spec in chosen)}", err=True)
        try:
            run_worker(s, chosen)
        except ArchiveBusy as exc:
            fail(str(exc))
        finally:
            if not base.broker:
                withdraw_address(s)


def ingest(
    text: Optional[str] = typer.Argument(
        None, help="One text; without it, lines from stdin (plain text or JSON with text / session_id / tenant)."
    ),
    session: Optional[str] = typer.Option(None, "--session", "-s", help="Session id (default: one per text)."),
    tenant: str = typer.Option("default", help="Tenant of the texts."),
    as_json: bool = json_option("Print one JSON document {messages: [{message_id, session_id}], errors: [...]}."),
) -> None:
    """Publish texts to raw-text on a running stack; prints each message id (a stdin line that is not valid
    JSON, or a text over SCENESTREAM_MAX_TEXT_BYTES, is skipped and reported)."""
    from scenestream.client import TextRefused, check_size, publish, raw_text

    s = connected_settings()
    records, errors = [], []
    lines = [text] if text is not None else [line.rstrip("\n") for line in sys.stdin]
    for lineno, line in enumerate(lines, start=1):
        if text is None and line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append({"line": lineno, "error": f"invalid JSON: {exc}", "text": line})
                continue
            line_text, line_session, line_tenant = str(item.get("text", "")), item.get("session_id"), item.get("tenant")
        else:
            line_text, line_session, line_tenant = line, None, None
        try:
            check_size(line_text, s)
        except TextRefused as exc:
            errors.append({"line": lineno, "error": str(exc), "text": line_text[:80]})
            continue
        records.append(raw_text(line_text, line_session or session, line_tenant or tenant, source="ingest"))
    asyncio.run(publish(s, records))
    messages = [{"message_id": r.message_id, "session_id": r.session_id} for r in records]
    if as_json:
        print_json({"messages": messages, "errors": errors})
    else:
        for error in errors:
            typer.secho(f"line {error['line']} skipped: {error['error']}", err=True, fg=typer.colors.YELLOW)
        for message in messages:
            typer.echo(f"{message['message_id']}  session {message['session_id']}")


def tail(
    topic: str = typer.Argument(
        ..., help="raw-text, tokens, scenes, lora-outputs, memory-events, or any of them + .dlq"
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep waiting for new messages."),
    from_end: bool = typer.Option(False, "--from-end", help="Only messages that arrive from now on."),
    limit: int = typer.Option(0, help="Stop after this many messages (0: no limit)."),
) -> None:
    """Show a topic (DLQs included) as a stream of JSON lines, one per message: offset, key, decoded value
    or why it does not decode."""
    from scenestream.client import read_topic, view
    from scenestream.schemas.codec import to_json
    from scenestream.topics import resolve

    s = connected_settings()
    try:
        name, schema = resolve(topic, s)
    except KeyError as exc:
        fail(exc.args[0], 2)

    async def show() -> None:
        shown = 0
        async for record in read_topic(s, name, from_beginning=not from_end, follow=follow):
            typer.echo(to_json(view(record, schema)))
            shown += 1
            if limit and shown >= limit:
                return

    try:
        asyncio.run(show())
    except KeyError as exc:
        fail(exc.args[0])
    except KeyboardInterrupt:
        pass


@topics_app.command("list")
def topics_list(as_json: bool = json_option()) -> None:
    """Print the topic declarations."""
    from scenestream.topics import PIPELINE

    s = get_settings()
    declared = [
        {
            "name": d.full_name(s),
            "key": d.key,
            "partitions": d.partitions or s.partitions,
            "compacted": d.compacted,
            "retention_hours": None if d.compacted else d.retention_hours or s.retention_hours,
            "schema": d.schema.__name__,
            "dlq": d.dlq_name(s) if d.has_dlq else None,
            "doc": d.doc,
        }
        for d in PIPELINE
    ]
    if as_json:
        print_json(declared)
        return
    for d in declared:
        kept = "compact" if d["compacted"] else f"retention={d['retention_hours']}h"
        typer.echo(
            f"{d['name']:24} key={d['key']:10} partitions={d['partitions']:<3} {kept:16} "
            f"schema={d['schema']:12} dlq={d['dlq'] or '-'}  # {d['doc']}"
        )


@topics_app.command("create")
def topics_create(as_json: bool = json_option()) -> None:
    """Create the declared topics (and DLQs) on SCENESTREAM_BROKER (a real cluster); idempotent."""
    from scenestream.topics import create_topics

    s = get_settings()
    if not s.broker:
        fail(
            "set SCENESTREAM_BROKER=kafka://host:port to create topics on a cluster "
            "(the embedded broker creates its own)"
        )
    created = asyncio.run(create_topics(s))
    if as_json:
        print_json({"created": list(created)})
    else:
        typer.echo(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
