"""The offline scene path builds the scenes the tokenizer and scene stages build, with the same settings."""

from __future__ import annotations

import pytest

from scenestream.backbone import Resources
from scenestream.offline import scenes_for
from scenestream.runtime import stage_specs
from scenestream.schemas.records import RawText
from scenestream.settings import Settings

TEXTS = ["Почему я не чувствую шаг в себе?", "How many minutes are in a day?", "Море шумит, и мне спокойно 🫁"]


def raws() -> list[RawText]:
    return [RawText(message_id=f"off-{i}", session_id="s", text=t, ts_ms=1_000 + i) for i, t in enumerate(TEXTS)]


def through_the_stage_handlers(settings: Settings) -> list:
    """The handlers the runtime builds for the tokenizer and scene stages, without the transport."""
    resources = Resources()
    (tokenize,) = [spec.build(settings, resources) for spec in stage_specs("tokenizer", settings)]
    (build,) = [spec.build(settings, resources) for spec in stage_specs("scene", settings)]
    tokens = [record for result in tokenize.process(raws()) for _topic, record in result]
    return [record for result in build.process(tokens) for _topic, record in result]


def comparable(scene) -> dict:
    return scene.model_dump(exclude={"timings_ms"})


@pytest.mark.parametrize("overrides", [{}, {"scene_embedder": "static"}, {"hypertokens_max": 2}])
def test_offline_scenes_are_the_stages_scenes(overrides):
    settings = Settings(**overrides)
    offline = scenes_for(raws(), settings)
    assert [comparable(s) for s in offline] == [comparable(s) for s in through_the_stage_handlers(settings)]


def test_the_settings_reach_the_offline_path():
    default = scenes_for(raws(), Settings())
    static = scenes_for(raws(), Settings(scene_embedder="static"))
    few = scenes_for(raws(), Settings(hypertokens_max=2))
    assert {s.builder_version for s in default} != {s.builder_version for s in static}
    assert max(len(s.hypertokens) for s in few) <= 2 < max(len(s.hypertokens) for s in default)


def test_plain_texts_get_deterministic_ids():
    first, second = scenes_for([TEXTS[0]], Settings()), scenes_for([TEXTS[0]], Settings())
    assert first[0].message_id == second[0].message_id and first[0].scene_id == second[0].scene_id
