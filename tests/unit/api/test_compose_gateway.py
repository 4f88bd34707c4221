"""The chat API in docker-compose.yml: a gateway on every interface that refuses to start without keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from scenestream.api.keys import KeysError, check_bind, parse_keys

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"


def default(value: str) -> str:
    """A compose value as it resolves with an empty shell (``${VAR:-default}`` → default)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value))


def test_the_gateway_serves_on_every_interface_with_keys_only():
    gateway = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["gateway"]
    command = gateway["command"]
    assert command[0] == "serve" and command[command.index("--host") + 1] == "0.0.0.0"
    assert "--insecure" not in command
    env = {key: default(value) for key, value in gateway["environment"].items()}
    assert env["SCENESTREAM_QDRANT_URL"].startswith("http://qdrant")  # history, trace, erase on the shared archive
    assert env["SCENESTREAM_BROKER"].startswith("kafka://")  # a gateway only: the stage services answer
    with pytest.raises(KeysError, match="without API keys"):
        check_bind("0.0.0.0", parse_keys(env["SCENESTREAM_API_KEYS"]), insecure=False)
