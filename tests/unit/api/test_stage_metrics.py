"""The stages' figures on /metrics, read from the in-process runners when scraped."""

from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from scenestream.api.metrics import StageCollector

pytestmark = pytest.mark.unit


def test_stage_collector_reports_records_dead_letters_batch_time_and_lag():
    registry = CollectorRegistry()
    runner = SimpleNamespace(
        spec=SimpleNamespace(agent="decode_scene"), handled=3, dead=1, batches=2, batch_seconds=1.5
    )
    registry.register(StageCollector(lambda: [runner], lambda: {("scenes", 0): 4}))
    text = generate_latest(registry).decode()
    assert 'scenestream_stage_records_handled_total{stage="decode_scene"} 3.0' in text
    assert 'scenestream_stage_records_dead_lettered_total{stage="decode_scene"} 1.0' in text
    assert 'scenestream_stage_batch_seconds_count{stage="decode_scene"} 2.0' in text
    assert 'scenestream_stage_batch_seconds_sum{stage="decode_scene"} 1.5' in text
    assert "scenestream_stage_consumer_lag" in text and "4.0" in text
