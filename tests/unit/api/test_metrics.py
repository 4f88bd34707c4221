"""The API's Prometheus figures: the stages' timings from the records the gateway reads."""

from __future__ import annotations

from prometheus_client import generate_latest

from scenestream.api.metrics import Metrics

from .test_gateway import out, scene


def count(metrics: Metrics, step: str) -> float:
    return metrics.registry.get_sample_value("scenestream_stage_step_seconds_count", {"step": step}) or 0.0


def test_stage_steps_come_from_the_answered_scene_and_the_final_answer_only():
    metrics = Metrics()
    metrics.record(scene("formed").model_copy(update={"timings_ms": {"tokenize": 1.0, "scene": 4.0}}))
    metrics.record(scene("resonated").model_copy(update={"timings_ms": {"tokenize": 1.0, "scene": 4.0}}))
    metrics.record(out("piece").model_copy(update={"timings_ms": {"generate": 900.0}}))  # a partial: not yet
    metrics.record(out("whole", final=True).model_copy(update={"timings_ms": {"generate": 900.0, "queue": 2.0}}))
    assert count(metrics, "tokenize") == 1 and count(metrics, "scene") == 1
    assert count(metrics, "generate") == 1 and count(metrics, "queue") == 1
    total = metrics.registry.get_sample_value("scenestream_stage_step_seconds_sum", {"step": "generate"})
    assert abs(total - 0.9) < 1e-9
    assert b"scenestream_api_requests_in_flight" in generate_latest(metrics.registry)


def test_without_memory_the_formed_scene_counts():
    metrics = Metrics()
    metrics.scene_stage = "formed"
    metrics.record(scene("formed").model_copy(update={"timings_ms": {"scene": 4.0}}))
    assert count(metrics, "scene") == 1
