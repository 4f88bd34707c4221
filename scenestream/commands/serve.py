"""``scenestream serve``: the pipeline as an OpenAI-compatible chat backend (HTTP, SSE, WebSocket).

    scenestream serve [--host 127.0.0.1] [--port 8000] [--insecure]

With no SCENESTREAM_BROKER (and no stack running on this machine) it starts the embedded broker and every
stage in this process; with a broker it is a gateway only. The routes live in :mod:`scenestream.api.app`.
"""

from __future__ import annotations

import typer

from scenestream.commands.common import fail
from scenestream.settings import get_settings


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (anything but loopback needs API keys or --insecure)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Serve on a non-loopback address without API keys (SCENESTREAM_API_KEYS)."
    ),
    log_level: str = typer.Option("warning", help="uvicorn's log level (the stages log at SCENESTREAM_LOG_LEVEL)."),
) -> None:
    """Serve the OpenAI chat API (POST /v1/chat/completions, GET /v1/models …), the scene beside each answer.

    Until Ctrl-C. /healthz answers at once; /readyz and the /v1 routes say 503 until the pipeline is up."""
    from scenestream.api.keys import KeysError, check_bind, parse_keys

    settings = get_settings()
    try:
        keys = parse_keys(settings.api_keys)
        check_bind(host, keys, insecure)
    except KeysError as exc:
        fail(str(exc), 2)
    import uvicorn

    from scenestream.api.app import create_app
    from scenestream.app import configure_logging

    configure_logging(settings)
    where = "embedded broker and every stage in this process" if not settings.broker else settings.broker
    typer.echo(
        f"scenestream serve on http://{host}:{port}/v1  ({where}; tenants: {len(set(keys.values())) or 'none'})",
        err=True,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        loop="asyncio",
        ws="websockets-sansio",
        # open streams are closed (and their messages cancelled) rather than waited for at Ctrl-C
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
