"""Prompting and engine selection (no model loaded)."""

import pytest

from scenestream.agents.decoder.engines import BASE, Generation, adapters_in, choose_engine_name, make_engine
from scenestream.agents.decoder.prompt import build_prompt, clean_answer, settled_answer
from scenestream.agents.decoder.transform import Decoder
from scenestream.schemas.records import RegisterWeight, Scene, SceneField
from scenestream.settings import Settings


def scene(**kw):
    base = dict(
        scene_id="sc1",
        message_id="m1",
        session_id="s1",
        text="Почему я не чувствую шаг в себе?",
        lang="ru",
        hypertokens=[],
        linkage="дрожь·тишина·вход",
        delta_code="Δ41",
        field=SceneField(valence=-0.2, arousal=0.5, tension=0.6, rhythm="measured"),
        registers=[RegisterWeight(name="body", weight=0.6), RegisterWeight(name="philosopher", weight=0.4)],
        register="body",
        ts_ms=0,
    )
    base.update(kw)
    return Scene(**base)


def test_prompt_carries_the_scene_in_the_texts_language():
    prompt = build_prompt(scene())
    assert "register=body" in prompt and "Δ41" in prompt and "linkage=дрожь·тишина·вход" in prompt
    assert "valence=-0.20" in prompt and "rhythm=measured" in prompt
    assert prompt.splitlines()[-2] == "Текст: Почему я не чувствую шаг в себе?"
    assert prompt.endswith("Ответ:")
    english = build_prompt(scene(lang="en", text="Why?"))
    assert english.endswith("Text: Why?\nAnswer:")


def test_prompt_names_echoes_and_a_forced_register():
    prompt = build_prompt(scene(), "poet", echoes=[{"text": "тишина внутри", "answer": "дыши"}, {"text": "шаг"}])
    assert "register=poet" in prompt
    assert "Отзвук: тишина внутри → дыши" in prompt and "Отзвук: шаг" in prompt


def test_clean_answer_stops_at_the_next_block():
    assert clean_answer(" Дыши медленно.\nТекст: ещё") == "Дыши медленно."
    assert clean_answer("Breathe.\n<scene register=body>") == "Breathe."
    assert clean_answer("  plain  ") == "plain"


class FakeEngine:
    name = "fake"
    model = "fake-model"
    adapters = {"body": None}

    def __init__(self, text="answer for {adapter}"):
        self.requests = []
        self.text = text

    def generate(self, requests, on_delta=None):
        self.requests += requests
        texts = [f" {self.text.format(adapter=r.adapter)}\nText: more" for r in requests]
        if on_delta is not None:  # a few characters per step, rows interleaved, like a batched engine
            for at in range(0, max(map(len, texts)), 3):
                for i, text in enumerate(texts):
                    if text[at : at + 3]:
                        on_delta(i, text[at : at + 3])
        return [
            Generation(
                text=text,
                adapter=r.adapter if r.adapter in self.adapters else BASE,
                prompt_tokens=10,
                completion_tokens=5,
                first_token_ms=1.0,
                total_ms=2.0,
            )
            for text, r in zip(texts, requests)
        ]


def test_decoder_builds_outputs_in_order_and_honours_a_forced_register():
    engine = FakeEngine()
    outs = Decoder(engine).decode([scene(), scene(message_id="m2", force_register="poet")])
    assert [o.message_id for o in outs] == ["m1", "m2"]
    assert outs[0].text == "answer for body" and outs[0].adapter == "body" and outs[0].symbol == "🫁"
    assert outs[1].register == "poet" and outs[1].adapter == BASE
    assert outs[0].engine == "fake" and outs[0].delta_code == "Δ41"
    assert {"queue", "first_token", "generate"} <= set(outs[0].timings_ms)


def test_engine_selection(monkeypatch):
    import scenestream.agents.decoder.engines as engines

    monkeypatch.setattr(engines, "vllm_available", lambda: False)
    assert choose_engine_name(Settings()) == "transformers"
    monkeypatch.setattr(engines, "vllm_available", lambda: True)
    assert choose_engine_name(Settings()) == "vllm"
    assert choose_engine_name(Settings(engine="openai")) == "openai"
    with pytest.raises(RuntimeError, match="SCENESTREAM_OPENAI_BASE_URL"):
        make_engine(Settings(engine="openai"))
    with pytest.raises(ValueError):
        make_engine(Settings(), name="nope")


def test_adapters_are_found_per_register(tmp_path):
    (tmp_path / "poet").mkdir()
    (tmp_path / "poet" / "adapter_config.json").write_text("{}")
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "adapter_config.json").write_text("{}")
    assert list(adapters_in(Settings(adapters_dir=tmp_path))) == ["poet"]
    shipped = adapters_in(Settings())  # each register file's own folder
    assert list(shipped) == ["poet", "logician", "body", "philosopher"]
    assert all((path / "adapter_config.json").exists() for path in shipped.values())


def test_settled_answer_is_always_a_prefix_of_the_clean_answer():
    import random

    rng = random.Random(7)
    alphabet = list("ab \n<scenТекст:ОтвAnswer/>ip") + ["\ufffd", "\u200b"]
    for _ in range(3000):
        full = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for cut in range(len(full) + 1):
            assert clean_answer(full).startswith(settled_answer(full[:cut])), (full, cut)
    assert settled_answer(" Дыши.\nТек") == "Дыши."  # may become "\nТекст:", held back
    assert settled_answer(" Дыши. ") == "Дыши."
    assert settled_answer(" Дыши.\nТекст: ещё") == "Дыши."


def test_tags_and_zero_width_characters_are_never_part_of_an_answer():
    assert clean_answer("Вода дышит сердцем и голосом</i>") == "Вода дышит сердцем и голосом"
    assert clean_answer("Line one<br>line two.</p>\u200b") == "Line oneline two."
    assert clean_answer("If a < b and b > c, then a < c.") == "If a < b and b > c, then a < c."
    # a tag's beginning is held back while it grows, and what settles never changes after it was streamed
    assert settled_answer("your room is home too now.</p") == "your room is home too now."
    assert settled_answer("held </") == "held"
    assert settled_answer("If a < b") == "If a < b"
    # an incomplete UTF-8 character after the start of a stop: the stop's start is still held back
    assert settled_answer("later on.<\ufffd") == "later on."


def test_decoder_streams_partials_that_join_into_the_final_answer():
    engine = FakeEngine("a long answer for {adapter}, in many pieces")
    partials = []
    outs = Decoder(engine, stream_interval_ms=0).decode(
        [scene(), scene(message_id="m2", force_register="poet")], partial=partials.append
    )
    for out in outs:
        mine = [p for p in partials if p.message_id == out.message_id]
        assert out.final and len(mine) > 3 and out.seq == len(mine)
        assert [p.seq for p in mine] == list(range(len(mine)))
        assert all(not p.final and p.register == out.register and p.adapter == out.adapter for p in mine)
        assert "".join(p.text for p in mine) == out.text  # the stop ("\nText:") is never streamed
    assert outs[0].text == "a long answer for body, in many pieces"


def test_decoder_streams_at_most_one_partial_per_interval():
    partials = []
    outs = Decoder(FakeEngine("a long answer for {adapter}"), stream_interval_ms=60_000).decode(
        [scene()], partial=partials.append
    )
    assert len(partials) == 1 and outs[0].seq == 1 and outs[0].text.startswith(partials[0].text)


def test_decoder_without_a_receiver_sends_only_final_records():
    outs = Decoder(FakeEngine()).decode([scene()])
    assert outs[0].final and outs[0].seq == 0


def test_vllm_engine_core_gets_tcmalloc_preloaded_and_the_environment_comes_back(monkeypatch):
    import sys
    import types

    import scenestream.agents.decoder.engines as engines

    platform = types.SimpleNamespace(is_cpu=lambda: True)
    monkeypatch.setitem(sys.modules, "vllm.platforms", types.SimpleNamespace(current_platform=platform))
    monkeypatch.setattr(engines, "find_tcmalloc", lambda: "/lib/libtcmalloc_minimal.so.4")
    monkeypatch.setenv("LD_PRELOAD", "/lib/other.so")
    with engines._engine_core_preload():
        import os

        assert os.environ["LD_PRELOAD"] == "/lib/libtcmalloc_minimal.so.4:/lib/other.so"
    assert os.environ["LD_PRELOAD"] == "/lib/other.so"
    monkeypatch.delenv("LD_PRELOAD")
    with engines._engine_core_preload(wanted=False):  # SCENESTREAM_VLLM_TCMALLOC=false
        assert "LD_PRELOAD" not in os.environ
    platform.is_cpu = lambda: False  # a GPU build: nothing preloaded
    with engines._engine_core_preload():
        assert "LD_PRELOAD" not in os.environ
