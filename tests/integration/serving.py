"""What the tests of ``scenestream serve`` share: the real command on its own embedded stack, two API keys.

The ``served`` fixture (tests/integration/conftest.py) runs :func:`served_stack` once per test module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

K1, K2 = "key-acme-1", "key-globex-2"  # tenants acme and globex

SERVE_ENV = {
    "SCENESTREAM_ENGINE": "transformers",
    "SCENESTREAM_MAX_NEW_TOKENS": "8",
    "SCENESTREAM_ANSWER_MIN_TOKENS": "0",  # a 60-token answer runs until cancelled, not to a sentence end
    "SCENESTREAM_SCENE_EMBEDDER": "static",
    "SCENESTREAM_API_KEYS": f"{K1}=acme,{K2}=globex",
    "SCENESTREAM_API_TIMEOUT_S": "180",
}


def served_stack(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """``scenestream serve`` with no broker set (so the embedded broker and every stage in its process, the
    transformers engine, short answers, keys of two tenants); yields (base url, data dir) once it is ready."""
    from scenestream.serving import serve_process
    from scenestream.settings import Settings
    from scenestream.training.provision import provision

    provision(Settings(), progress=False)  # the base model, once per machine
    with serve_process(tmp_path_factory.mktemp("serve"), SERVE_ENV) as served:
        yield served.url, served.data
