"""The ``scenestream`` command: the command groups of :mod:`scenestream.commands`, assembled.

    scenestream --help
    python -m scenestream ask "текст"
    accelerate launch … -m scenestream.cli train --register body

Every setting is an environment variable with the prefix ``SCENESTREAM_``;
``scenestream settings`` lists them with their values and what they do.
"""

from __future__ import annotations

import typer

from scenestream.commands import audit, bench, client, model, registers, serve, stack

app = typer.Typer(
    help="scenestream: text → tokens → scene → memory → LoRA register → answer, as stream processors over Kafka.\n\n"
    "With no SCENESTREAM_BROKER set, commands start an embedded Tansu broker on a free loopback port; "
    "SCENESTREAM_BROKER=kafka://host:port[,host:port] uses a real Kafka cluster. "
    "Run `scenestream settings` for every SCENESTREAM_ variable. "
    "Commands that print a result print one JSON document with --json.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(bench.bench_app, name="bench")
app.add_typer(stack.topics_app, name="topics")
app.add_typer(registers.register_app, name="register")
# in the order `scenestream --help` lists them
for name, command in (
    ("settings", stack.settings),
    ("broker", stack.broker),
    ("run", stack.run),
    ("ingest", stack.ingest),
    ("tail", stack.tail),
    ("ask", client.ask),
    ("serve", serve.serve),
    ("setup", model.setup),
    ("train", model.train),
    ("sample-answers", model.sample_answers),
    ("scene", client.scene),
    ("trace", audit.trace),
    ("history", audit.history),
    ("replay", audit.replay),
):
    app.command(name)(command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
