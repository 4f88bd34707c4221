"""Integration tier: the real embedded broker, a unique topic prefix and group per test."""

from __future__ import annotations

import uuid

import pytest

from scenestream.broker import EmbeddedBroker
from scenestream.settings import Settings


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker() as embedded:
        yield embedded


@pytest.fixture
def settings_factory(broker, tmp_path):
    """Settings like production's, on the test broker, isolated by prefix and group."""

    def make(**overrides) -> Settings:
        run = uuid.uuid4().hex[:8]
        values = dict(broker=broker.url, topic_prefix=f"it-{run}-", app_id=f"it-{run}", data_dir=tmp_path / run)
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``scenestream serve`` on its own embedded stack, once per module (tests/integration/serving.py); yields
    (base url, data dir)."""
    from tests.integration.serving import served_stack

    yield from served_stack(tmp_path_factory)
