"""``GET /metrics``: Prometheus figures of the API and of the stages running in this process.

API: requests by route and status, time to the first token and to the whole answer, tokens, requests in
flight. Stages (the in-process worker of an embedded ``serve``): records handled and dead-lettered per
stage, the time per batch, and each source partition's lag (its end offset minus the worker's position).
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


class StageCollector:
    """Reads the in-process stage runners when scraped (nothing when the stages run elsewhere)."""

    def __init__(self, runners: Callable[[], list], lags: Callable[[], dict[tuple[str, int], int]]) -> None:
        self.runners = runners
        self.lags = lags

    def describe(self) -> list:
        return []

    def collect(self) -> Any:
        handled = CounterMetricFamily(
            "scenestream_stage_records_handled", "Records a stage of this process handled", labels=["stage"]
        )
        dead = CounterMetricFamily(
            "scenestream_stage_records_dead_lettered", "Records a stage of this process dead-lettered", labels=["stage"]
        )
        for runner in self.runners():
            handled.add_metric([runner.spec.agent], float(getattr(runner, "handled", 0)))
            dead.add_metric([runner.spec.agent], float(getattr(runner, "dead", 0)))
        yield handled
        yield dead
        batches = SummaryMetricFamily(
            "scenestream_stage_batch_seconds",
            "Time a stage of this process spent per batch (a continuous stage: per input, admission to delivery)",
            labels=["stage"],
        )
        for runner in self.runners():
            batches.add_metric(
                [runner.spec.agent],
                count_value=float(getattr(runner, "batches", 0)),
                sum_value=float(getattr(runner, "batch_seconds", 0.0)),
            )
        yield batches
        lag = GaugeMetricFamily(
            "scenestream_stage_consumer_lag",
            "Records of a source partition the in-process worker has not read yet",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(self.lags().items()):
            lag.add_metric([topic, str(partition)], float(behind))
        yield lag


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "scenestream_api_requests", "API requests by route and status", ["route", "status"], registry=r
        )
        self.in_flight = Gauge("scenestream_api_requests_in_flight", "Requests waiting for an answer", registry=r)
        self.first_token = Histogram(
            "scenestream_api_time_to_first_token_seconds",
            "From the request to the first piece of the answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.answer = Histogram(
            "scenestream_api_answer_seconds",
            "From the request to the whole answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("scenestream_api_tokens", "Tokens of answered requests", ["kind"], registry=r)
        self.refused = Counter("scenestream_api_refused", "Requests refused, by reason (code)", ["code"], registry=r)
        self.scene_stage = "resonated"
        self.stage_time = Histogram(
            "scenestream_stage_step_seconds",
            "Time of each step of the pipeline, as the records read by this process carry it (timings_ms)",
            ["step"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
            registry=r,
        )
        self.cancelled = Counter(
            "scenestream_api_cancelled",
            "Messages the API cancelled (a Cancel on the control topic)",
            ["reason"],
            registry=r,
        )

    def record(self, item: Any) -> None:
        """The stage timings a pipeline record carries (every record the gateway reads, not only its own
        requests'): the scene the decoder answers (tokenize, embed, scene, memory …) and each final answer
        (queue, first_token, generate …)."""
        stage = getattr(item, "stage", None)
        if stage is not None and stage != self.scene_stage:
            return  # a formed scene when memory is on: its timings come again with the resonated one
        if getattr(item, "final", True) is False:
            return
        for step, ms in (getattr(item, "timings_ms", None) or {}).items():
            if isinstance(ms, (int, float)):
                self.stage_time.labels(step=step).observe(ms / 1000)

    def watch_stages(self, runners: Callable[[], list], lags: Callable[[], dict[tuple[str, int], int]]) -> None:
        self.registry.register(StageCollector(runners, lags))
