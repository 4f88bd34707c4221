"""The backbone's copy of faust's drain loop is tied to the faust it was adapted from."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from importlib.metadata import version

from scenestream.app import ADAPTED_FROM


def test_the_adapted_drain_loop_matches_the_installed_faust():
    distribution, adapted_version, function, digest = ADAPTED_FROM
    assert version(distribution) == adapted_version, (
        f"{distribution} is {version(distribution)}, the drain loop in scenestream/app.py was adapted from "
        f"{adapted_version}: re-read {function} and update the copy and ADAPTED_FROM"
    )
    module, cls, name = function.rsplit(".", 2)
    source = inspect.getsource(getattr(getattr(importlib.import_module(module), cls), name))
    assert hashlib.sha256(source.encode()).hexdigest() == digest, f"{function} changed: re-read it"
