"""Scene builder transform: deterministic ids and codes, ranges, registers, both languages."""

import numpy as np
import pytest

from scenestream.agents.scene.field import field_of, rhythm_of
from scenestream.agents.scene.transform import SceneBuilder, active_registers, register_weights
from scenestream.agents.tokenizer.transform import Tokenizer
from scenestream.schemas import RawText

SEED = "Почему я не чувствую шаг в себе?"


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer()


@pytest.fixture(scope="module", params=["e5", "static"])
def builder(request):
    return SceneBuilder(embedder_name=request.param)


def scenes(builder, tokenizer, texts, prefix="m"):
    tokens = [
        tokenizer.tokenize(RawText(message_id=f"{prefix}{i}", session_id="s", text=t)) for i, t in enumerate(texts)
    ]
    return builder.build(tokens)


def test_full_scene_for_the_seed_example(builder, tokenizer):
    (scene,) = scenes(builder, tokenizer, [SEED])
    assert scene.stage == "formed" and scene.lang == "ru"
    assert scene.delta_code.startswith("Δ") and scene.delta_code[1:].isdigit()
    assert len(scene.linkage.split("·")) == 3
    assert {r.name for r in scene.registers} == {"poet", "logician", "body", "philosopher"}
    assert abs(sum(r.weight for r in scene.registers) - 1.0) < 1e-9
    assert scene.register == scene.registers[0].name


def test_seed_example_gets_body_and_philosopher_on_top(tokenizer):
    (scene,) = scenes(SceneBuilder(embedder_name="e5"), tokenizer, [SEED])
    assert {r.name for r in scene.registers[:2]} == {"body", "philosopher"}


def test_scene_id_and_delta_code_are_deterministic(builder, tokenizer):
    a = scenes(builder, tokenizer, ["The sea at night breathes slowly", "Сколько будет 17 умножить на 23?"])
    b = scenes(builder, tokenizer, ["The sea at night breathes slowly", "Сколько будет 17 умножить на 23?"])
    assert [s.scene_id for s in a] == [s.scene_id for s in b]
    assert [s.delta_code for s in a] == [s.delta_code for s in b]
    other = scenes(builder, tokenizer, ["The sea at night breathes slowly"], prefix="other")
    assert other[0].scene_id != a[0].scene_id  # the id comes from the message id
    assert other[0].delta_code == a[0].delta_code  # the code from the meaning


def test_batch_and_single_give_the_same_scene(builder, tokenizer):
    texts = ["Мои плечи зажаты, в груди тяжесть", "Is freedom possible if every choice has a cause?", "2 + 2 = 4?"]
    together = scenes(builder, tokenizer, texts)
    alone = [scenes(builder, tokenizer, [t], prefix=f"m{i}")[0] for i, t in enumerate(texts)]
    for x, y in zip(together, alone):
        assert x.register == y.register and x.delta_code == y.delta_code and x.linkage == y.linkage


@pytest.mark.parametrize(
    "text,register",
    [
        ("My shoulders are tight and my chest feels heavy after the long run", "body"),
        ("If the train leaves at 9 and takes 3 hours, when does it arrive?", "logician"),
        ("Что значит быть свободным, если у каждого выбора есть причина?", "philosopher"),
        ("Вечерний свет ложится на крыши, как усталая птица", "poet"),
    ],
)
def test_clear_texts_route_to_their_register(tokenizer, text, register):
    (scene,) = scenes(SceneBuilder(embedder_name="e5"), tokenizer, [text])
    assert scene.register == register


def test_field_ranges_and_signs():
    happy = field_of("I am so happy and grateful today, what a joy!", "en")
    sad = field_of("Мне очень больно и страшно, я не могу больше терпеть", "ru")
    for f in (happy, sad):
        assert -1 <= f["valence"] <= 1 and 0 <= f["arousal"] <= 1 and 0 <= f["tension"] <= 1
    assert happy["valence"] > 0 > sad["valence"]
    assert sad["tension"] > happy["tension"]
    assert field_of("СТОП! Сейчас же! Бегите!", "ru")["arousal"] > field_of("тихий спокойный вечер", "ru")["arousal"]


def test_rhythm():
    assert rhythm_of("Стоп. Тихо. Дыши.", ["стоп", "тихо", "дыши"]) == "staccato"
    long = "и " * 20
    assert rhythm_of(long + ".", long.split()) == "flowing"


def test_register_weights_sum_to_one_after_rounding():
    weights = register_weights(np.array([0.33333, 0.33333, 0.33334, 0.0]), ("poet", "logician", "body", "philosopher"))
    assert sum(w.weight for w in weights) == pytest.approx(1.0, abs=1e-12)
    assert [w.weight for w in weights] == sorted((w.weight for w in weights), reverse=True)


def test_active_registers_can_be_several(tokenizer):
    (scene,) = scenes(SceneBuilder(embedder_name="e5"), tokenizer, [SEED])
    assert len(active_registers(scene)) >= 1
    assert active_registers(scene, threshold=0.0) == [r.name for r in scene.registers]
