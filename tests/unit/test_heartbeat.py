"""Workers' heartbeats and what a gateway concludes from them; each worker's consumer group."""

from types import SimpleNamespace

from scenestream.heartbeat import STALE_AFTER, Heard, pipeline_ready, pipeline_routes, status_of
from scenestream.runtime import group_id
from scenestream.schemas.codec import decode, encode
from scenestream.schemas.records import WorkerStatus
from scenestream.settings import Settings

NOW = 1_000_000_000
S = Settings(topic_prefix="t-")
ROUTES = pipeline_routes(S)
PARTS = {topic: range(4) for _stage, topic in ROUTES.values()}


def status(worker, stages, held=range(4), engine=None, age_s=0.0, stopping=False, interval=5.0):
    topics = {topic for stage, topic in ROUTES.values() if stage in stages}
    return WorkerStatus(
        worker=worker,
        stages=list(stages),
        assigned={topic: list(held) for topic in topics},
        engine=engine,
        interval_s=interval,
        stopping=stopping,
        ts_ms=NOW - int(age_s * 1000),
    )


def live(*statuses):
    heard = Heard()
    for s in statuses:
        heard.note(s)
    return heard.live(NOW)


def test_the_routes_are_every_agent_with_its_stage_and_source():
    assert ROUTES["decode_scene"] == ("decoder", "t-scenes")
    assert ROUTES["link_answer"] == ("memory", "t-lora-outputs")
    assert "remember_scene" not in pipeline_routes(Settings(memory=False))


def test_ready_when_workers_of_each_stage_hold_every_partition_and_an_engine_is_up():
    whole = ("tokenizer", "scene", "memory", "decoder")
    ok, checks = pipeline_ready(live(status("a", whole, engine="vllm")), ROUTES, PARTS)
    assert ok and checks["engine"] and checks["engines"] == ["vllm"] and checks["workers"] == 1
    # split over workers: two tokenizers with two partitions each, the rest elsewhere
    split = live(
        status("t1", ["tokenizer"], held=[0, 1]),
        status("t2", ["tokenizer"], held=[2, 3]),
        status("rest", ["scene", "memory", "decoder"], engine="transformers"),
    )
    assert pipeline_ready(split, ROUTES, PARTS)[0]


def test_not_ready_names_the_partitions_no_live_worker_of_the_stage_holds():
    ok, checks = pipeline_ready(
        live(
            status("t1", ["tokenizer"], held=[0, 1]),
            status("rest", ["scene", "memory", "decoder"], engine="vllm"),
        ),
        ROUTES,
        PARTS,
    )
    assert not ok and checks["stages"]["tokenize_raw_text"] is False
    assert checks["unheld_partitions"] == {"tokenize_raw_text": [2, 3]}
    # a memory worker holding every partition of scenes does not make the decoder's scenes held
    ok, checks = pipeline_ready(
        live(status("a", ["tokenizer", "scene", "memory"]), status("d", ["decoder"], held=[], engine="vllm")),
        ROUTES,
        PARTS,
    )
    assert not ok and checks["unheld_partitions"] == {"decode_scene": [0, 1, 2, 3]}


def test_a_decoder_without_an_engine_and_workers_gone_quiet_or_stopping_are_not_ready():
    whole = ("tokenizer", "scene", "memory", "decoder")
    ok, checks = pipeline_ready(live(status("a", whole, engine=None)), ROUTES, PARTS)
    assert not ok and checks["engine"] is False and all(checks["stages"].values())
    assert live(status("a", whole, age_s=STALE_AFTER * 5.0 + 1)) == []
    assert len(live(status("a", whole, age_s=STALE_AFTER * 5.0 - 1))) == 1
    assert live(status("a", whole, stopping=True)) == []
    assert pipeline_ready([], ROUTES, PARTS) == (False, pipeline_ready([], ROUTES, PARTS)[1])


def test_the_latest_heartbeat_of_a_worker_wins_whatever_order_they_come_in():
    heard = Heard()
    heard.note(status("a", ["tokenizer"], age_s=0.0))
    heard.note(status("a", ["tokenizer"], age_s=1.0, stopping=True))  # an older one, read late
    assert heard.live(NOW)[0].stopping is False
    heard.note(status("a", ["tokenizer"], age_s=-1.0, stopping=True))
    assert heard.live(NOW) == []


def test_a_worker_reports_its_stages_partitions_and_engine():
    tp = SimpleNamespace
    app = SimpleNamespace(
        consumer=SimpleNamespace(
            assignment=lambda: [tp(topic="t-scenes", partition=2), tp(topic="t-scenes", partition=0)]
        )
    )
    spec = SimpleNamespace(name="decoder", source=SimpleNamespace(full_name=lambda s: "t-scenes"))
    engine = SimpleNamespace(name="vllm")
    runner = SimpleNamespace(spec=spec, handler=SimpleNamespace(decoder=SimpleNamespace(engine=engine), loop=None))
    got = status_of(app, S, [runner])
    assert (got.stages, got.assigned, got.engine) == (["decoder"], {"t-scenes": [0, 2]}, "vllm")
    assert decode(encode(got), WorkerStatus) == got
    failed = SimpleNamespace(decoder=SimpleNamespace(engine=engine), loop=SimpleNamespace(failure=RuntimeError()))
    assert status_of(app, S, [SimpleNamespace(spec=spec, handler=failed)]).engine is None
    last = status_of(app, S, [runner], stopping=True)
    assert last.stopping and last.assigned == {} and last.engine is None


def test_workers_of_other_stages_never_share_a_consumer_group():
    def specs(*names):
        return [SimpleNamespace(name=n) for n in names]

    assert group_id(S, specs("tokenizer", "scene", "memory", "decoder")) == "scenestream"
    assert group_id(Settings(memory=False), specs("tokenizer", "scene", "decoder")) == "scenestream"
    assert group_id(S, specs("tokenizer", "scene", "decoder")) == "scenestream-tokenizer+scene+decoder"
    assert group_id(S, specs("decoder")) != group_id(S, specs("memory"))
    assert group_id(S, specs("scene", "tokenizer")) == group_id(S, specs("tokenizer", "scene"))
