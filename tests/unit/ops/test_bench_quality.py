"""`bench quality`'s arithmetic with a fake engine and fake readers: every eval prompt asked once per register
through its adapter and once through the base model with the same prompt, figures per register and language,
the base model's side by side, the targets, and a judge that reads only what was already generated."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest

from scenestream.agents.decoder.engines import BASE, Generation, Request
from scenestream.ops.bench_decoder import (
    QUALITY_TARGETS,
    Asked,
    Scorers,
    check_quality_targets,
    eval_prompts,
    measure_quality,
    quality_requests,
)
from scenestream.settings import Settings

PROMPTS = [
    {"id": "ru-1", "lang": "ru", "text": "Почему я не сплю?"},
    {"id": "ru-2", "lang": "ru", "text": "Как считать деньги?"},
    {"id": "en-1", "lang": "en", "text": "Why can't I sleep?"},
    {"id": "en-2", "lang": "en", "text": "How do I count money?"},
]
# the decoder's answer policy in these tests: stop at a sentence end from the 6th word on, at most 12 words
SETTINGS = Settings(max_new_tokens=12, answer_min_tokens=6)
# what the fake engine would write, per (register or base, prompt id), were it never stopped; built to show the
# answer policy and to fail or pass the checks
RAW = {
    # a sentence ends at the 8th word: the policy stops there, "Итог: убрать кофе." is never generated
    ("logician", "ru-1"): "Сон сбит по трём причинам: свет, кофе, тревога. Итог: убрать кофе.",
    ("logician", "ru-2"): "По данным ВОЗ, деньги считают так: доход минус расход.",  # an invented source
    # the first sentence ends at the 5th word, before the minimum: the answer goes on to its end, where the
    # model ends it without a full stop: the decoder closes it with one
    ("logician", "en-1"): "Three causes: light, coffee, worry. Remove the coffee first",
    # no sentence end before the limit: nothing to trim back to, the answer stays unfinished
    ("logician", "en-2"): "First list the income then the costs then the savings then the taxes then the rest",
    (BASE, "ru-1"): "Я не знаю, я тоже не сплю и не сплю и не сплю и не сплю.",  # loops
    (BASE, "ru-2"): "Money is counted in rubles.",  # wrong language
    (BASE, "en-1"): "",  # empty
    # runs into the limit mid-sentence: trimmed to its last complete sentence
    (BASE, "en-2"): "Count it twice. Then once more and then again and again until the sum is right.",
}
# what a user gets: the text after the decoder's policy (and what the bench must measure)
ANSWERS = {
    ("logician", "ru-1"): "Сон сбит по трём причинам: свет, кофе, тревога.",
    ("logician", "ru-2"): RAW[("logician", "ru-2")],
    ("logician", "en-1"): RAW[("logician", "en-1")] + ".",
    ("logician", "en-2"): "First list the income then the costs then the savings then the",
    (BASE, "ru-1"): "Я не знаю, я тоже не сплю и не сплю и не",
    (BASE, "ru-2"): RAW[(BASE, "ru-2")],
    (BASE, "en-1"): "",
    (BASE, "en-2"): "Count it twice.",
}


@dataclass
class FakeEngine:
    """One word per step for every row of a batch, as an engine streams: a row stops when its receiver says so
    (finish 'sentence'), at the end of its text (then it writes the next block's label, as the model does;
    'stop') or at its token limit ('length')."""

    name: str = "fake"
    model: str = "fake-model"

    def __post_init__(self):
        self.adapters = {"logician": "adapters/logician"}
        self.calls: list[list[Request]] = []

    def generate(self, requests, on_delta=None):
        self.calls.append(list(requests))
        rows = []
        for r in requests:
            # the prompt ends with the text's line; find the prompt id by its text
            row = next(p for p in PROMPTS if p["text"] in r.prompt)
            words = re.findall(r"\s*\S+", " " + RAW[(r.adapter, row["id"])] + "\nText: next")
            limit = r.params.max_new_tokens if r.params else SETTINGS.max_new_tokens
            rows.append({"adapter": r.adapter, "words": words, "limit": limit, "text": "", "n": 0, "reason": None})
        while any(row["reason"] is None for row in rows):
            for i, row in enumerate(rows):
                if row["reason"] is not None:
                    continue
                word = row["words"][row["n"]]
                row["text"] += word
                row["n"] += 1
                if on_delta is not None and on_delta(i, word):
                    row["reason"] = "sentence"
                elif row["n"] == len(row["words"]):
                    row["reason"] = "stop"
                elif row["n"] == row["limit"]:
                    row["reason"] = "length"
        return [
            Generation(row["text"], row["adapter"], 10, row["n"], None, 1.0, finish_reason=row["reason"])
            for row in rows
        ]


def fake_asked(registers=("logician",)) -> list[Asked]:
    return [
        Asked(register, side, row, Request(f"<scene register={register}>\nText: {p['text']}\nAnswer:", adapter))
        for register in registers
        for row, p in enumerate(PROMPTS)
        for side, adapter in (("adapter", register), ("base", BASE))
    ]


def embed(texts):
    """Two dimensions: Russian or not, and whether the text mentions sleep; normalised."""
    rows = np.array(
        [
            [1.0 if any("а" <= c <= "я" for c in t.lower()) else 0.2, 1.0 if "сп" in t or "sleep" in t else 0.1]
            for t in texts
        ]
    )
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def scorers(judge=None, seen=None):
    def judged(texts):
        if seen is not None:
            seen.append(list(texts))
        return (
            judge(texts)
            if judge
            else ["logician" if t.strip() and not t.startswith(("Я", "Money")) else "poet" for t in texts]
        )

    return Scorers(judge=judged, router=lambda texts: ["logician"] * len(texts), embed=embed, count_tokens=len)


def prompt_scenes():
    """A formed scene per prompt, as the scene builder would hand the decoder (read as the body's)."""
    from scenestream.schemas.records import RegisterWeight, Scene, SceneField

    return [
        Scene(
            scene_id=f"sc-{i}",
            message_id=p["id"],
            session_id="s",
            stage="formed",
            text=p["text"],
            lang=p["lang"],
            hypertokens=[],
            concepts=[],
            linkage="a·b·c",
            delta_code="Δ1",
            field=SceneField(valence=0.0, arousal=0.5, tension=0.5, rhythm="measured"),
            registers=[RegisterWeight(name="body", weight=1.0)],
            register="body",
            ts_ms=1,
        )
        for i, p in enumerate(PROMPTS)
    ]


def test_every_prompt_is_asked_once_per_adapter_and_once_per_base_with_the_same_prompt():
    scenes = prompt_scenes()
    asked = quality_requests(scenes, ("poet", "logician"))
    assert len(asked) == 2 * 2 * len(PROMPTS)
    assert {(a.register, a.side, a.row) for a in asked} == {
        (r, s, i) for r in ("poet", "logician") for s in ("adapter", "base") for i in range(len(PROMPTS))
    }
    by = {(a.register, a.side, a.row): a.request for a in asked}
    for register in ("poet", "logician"):
        for i in range(len(PROMPTS)):
            adapter, base = by[(register, "adapter", i)], by[(register, "base", i)]
            assert (adapter.adapter, base.adapter) == (register, BASE)
            assert adapter.prompt == base.prompt and f"register={register}" in adapter.prompt
    # the prompt is the one the decoder builds for a scene whose register is forced
    from scenestream.agents.decoder.transform import Decoder

    forced = [s.model_copy(update={"force_register": "poet"}) for s in scenes]
    decoder_requests = Decoder(FakeEngine()).requests(forced)
    ours = [by[("poet", "adapter", i)] for i in range(len(PROMPTS))]
    assert [(r.prompt, r.adapter) for r in ours] == [(r.prompt, r.adapter) for r in decoder_requests]


def test_every_answer_is_what_the_decoder_would_send_adapter_and_base_alike():
    """The bench measures the decoder's answers, not the engine's raw text: each answer stops at a sentence end
    once long enough and is trimmed at the token limit (``Decoder.answer``), the base model's as the adapters'.
    A bench that generated with ``engine.generate`` and only cut the next block would measure the raw texts."""
    from scenestream.agents.decoder.prompt import clean_answer
    from scenestream.agents.decoder.transform import Decoder

    # the policy matters for these answers: raw, they would be longer or unfinished
    assert clean_answer(RAW[("logician", "ru-1")]) != ANSWERS[("logician", "ru-1")]
    raw_base_en2 = clean_answer(" ".join(RAW[(BASE, "en-2")].split()[: SETTINGS.max_new_tokens]))
    assert raw_base_en2 != ANSWERS[(BASE, "en-2")] and not raw_base_en2.endswith(".")

    report = measure_quality(FakeEngine(), PROMPTS, fake_asked(), scorers(), settings=SETTINGS, include_answers=True)
    got = {(a["served_by"], a["id"]): a for a in report["answers"]}
    assert {key: a["answer"] for key, a in got.items()} == ANSWERS
    assert got[("logician", "ru-1")]["finish_reason"] == "sentence" and not got[("logician", "ru-1")]["trimmed"]
    assert got[(BASE, "en-2")]["finish_reason"] == "length" and got[(BASE, "en-2")]["trimmed"]
    assert got[(BASE, "en-2")]["finished"] and got[(BASE, "en-2")]["generated_tokens"] == SETTINGS.max_new_tokens
    assert got[("logician", "en-2")]["finish_reason"] == "length" and not got[("logician", "en-2")]["finished"]
    adapter, base = report["per_register"]["logician"]["adapter"], report["per_register"]["logician"]["base"]
    assert adapter["ru"]["stopped_at_sentence"] == 1.0 and adapter["en"]["stopped_at_sentence"] == 0.0
    assert base["en"]["trimmed"] == 0.5 and base["en"]["finished"] == 0.5 and adapter["all"]["trimmed"] == 0.0
    assert report["overall"]["base"]["trimmed"] == 0.25
    assert got[("logician", "en-1")]["closed"] and got[("logician", "en-1")]["finish_reason"] == "stop"
    assert adapter["en"]["closed"] == 0.5 and base["all"]["closed"] == 0.0 and not got[(BASE, "en-2")]["closed"]

    # and the adapters' answers are exactly the batch decoder's final records for the same scenes
    forced = [scene.model_copy(update={"force_register": "logician"}) for scene in prompt_scenes()]
    asked = quality_requests(forced, ("logician",))
    report = measure_quality(FakeEngine(), PROMPTS, asked, scorers(), settings=SETTINGS, include_answers=True)
    decoded = Decoder(FakeEngine(), settings=SETTINGS).decode(forced)
    ours = [a["answer"] for a in report["answers"] if a["side"] == "adapter"]
    assert ours == [out.text for out in decoded] == [ANSWERS[("logician", p["id"])] for p in PROMPTS]


def test_without_a_minimum_the_bench_follows_the_settings_too():
    """``answer_min_tokens=0`` (no early stop): the answer runs to its end; the limit still trims."""
    settings = SETTINGS.model_copy(update={"answer_min_tokens": 0})
    report = measure_quality(FakeEngine(), PROMPTS, fake_asked(), scorers(), settings=settings, include_answers=True)
    got = {(a["served_by"], a["id"]): a["answer"] for a in report["answers"]}
    assert got[("logician", "ru-1")] == RAW[("logician", "ru-1")]
    assert got[(BASE, "en-2")] == "Count it twice."


def test_figures_per_register_and_language_with_the_base_beside():
    engine = FakeEngine()
    report = measure_quality(engine, PROMPTS, fake_asked(), scorers(), settings=SETTINGS, batch=3)
    assert [len(call) for call in engine.calls] == [3, 3, 2]  # batches of 3, in order, each request once
    assert report["generation"]["answers"] == 8
    adapter, base = report["per_register"]["logician"]["adapter"], report["per_register"]["logician"]["base"]
    assert adapter["all"]["n"] == 4 and adapter["ru"]["n"] == adapter["en"]["n"] == 2
    assert adapter["served_by"] == ["logician"] and base["served_by"] == [BASE]
    # adapter: ru = one clean, one with a source; en = one clean, one cut off at the token limit
    # "По данным ВОЗ": two snippets ("по данным", a named organisation) in one answer
    assert adapter["ru"]["invented_sources"] == 2 and adapter["ru"]["invented_sources_rate"] == 0.5
    assert adapter["ru"]["invented_sources_examples"] == ["По данным | ВОЗ"]
    assert adapter["en"]["invented_sources"] == 0
    assert adapter["en"]["finished"] == 0.5 and adapter["ru"]["finished"] == 1.0 and adapter["all"]["finished"] == 0.75
    assert adapter["en"]["at_token_limit"] == 0.5
    assert adapter["all"]["judge_fidelity"] == 1.0 and adapter["all"]["language_match"] == 1.0
    # base: ru = a loop (read as poet), English in a Russian answer's place (read as poet); en = empty, clean
    assert base["ru"]["loop_rate"] == 0.5 and base["ru"]["language_match"] == 0.5
    assert base["ru"]["judge_fidelity"] == 0.0 and base["ru"]["judge_read_misses_as"] == {"poet": 2}
    assert base["en"]["empty_answers"] == 1 and base["en"]["finished"] == 0.5 and base["en"]["language_match"] == 0.5
    assert base["en"]["judge_fidelity"] == 0.5  # the empty answer is a miss
    assert base["en"]["router_fidelity"] == 0.5  # for the router too, though it said "logician"
    # the answers are cleaned (clean_answer) before anything reads them; tokens counted on the cleaned answer
    assert adapter["all"]["tokens_mean"] == pytest.approx(
        sum(len(ANSWERS[("logician", p["id"])]) for p in PROMPTS) / 4, abs=0.05
    )
    # relevance: the mean cosine of answer and prompt; an empty answer counts 0
    vectors, prompt_vectors = embed([ANSWERS[(BASE, p["id"])] for p in PROMPTS]), embed([p["text"] for p in PROMPTS])
    expected = [
        float(vectors[i] @ prompt_vectors[i]) if ANSWERS[(BASE, p["id"])] else 0.0 for i, p in enumerate(PROMPTS)
    ]
    assert base["all"]["relevance"] == pytest.approx(np.mean(expected), abs=1e-4)
    delta = report["per_register"]["logician"]["relevance_adapter_minus_base"]
    assert delta["all"] == pytest.approx(adapter["all"]["relevance"] - base["all"]["relevance"], abs=1e-4)
    assert set(delta) == {"all", "ru", "en"}
    # overall, over registers
    assert report["overall"]["adapter"]["invented_sources"] == 2 and report["overall"]["base"]["loop_rate"] == 0.25


def test_targets_per_register_and_language():
    report = measure_quality(FakeEngine(), PROMPTS, fake_asked(), scorers(), settings=SETTINGS)
    targets = report["targets"]
    assert targets["thresholds"] == QUALITY_TARGETS
    ru, en = targets["per_register"]["logician"]["ru"], targets["per_register"]["logician"]["en"]
    assert ru["invented_sources"] == {"adapter": 2, "base": 0, "target": "≤ 0", "met": False}
    assert ru["judge_fidelity"]["met"] and ru["finished"]["met"] and ru["loop_rate"]["met"]
    assert not en["finished"]["met"] and en["finished"]["base"] == 0.5
    assert not targets["all_met"]
    assert any(line.startswith("logician ru invented_sources: 2") for line in targets["missed"])
    assert any(line.startswith("logician en finished: 0.5") for line in targets["missed"])
    # relevance is met when the adapter is not below the base model
    cell = lambda relevance: {  # noqa: E731
        "judge_fidelity": 1.0,
        "finished": 1.0,
        "language_match": 1.0,
        "invented_sources": 0,
        "loop_rate": 0.0,
        "relevance": relevance,
    }
    same = check_quality_targets({"poet": {"adapter": {"en": cell(0.8)}, "base": {"en": cell(0.8)}}})
    assert same["all_met"] and same["missed"] == []
    below = check_quality_targets({"poet": {"adapter": {"en": cell(0.79)}, "base": {"en": cell(0.8)}}})
    assert below["missed"] == ["poet en relevance: 0.79 (target ≥ base 0.8; base 0.8)"]


def test_the_judge_reads_only_what_was_generated_and_selects_nothing():
    """The judge is called once, after every request was generated, on every answer; what it says changes the
    judge's figures and nothing else: the same requests, answers and other figures with any judge."""
    seen: list[list[str]] = []
    engine = FakeEngine()
    first = measure_quality(engine, PROMPTS, fake_asked(), scorers(seen=seen), settings=SETTINGS, include_answers=True)
    assert len(seen) == 1 and len(seen[0]) == 8  # one reading of all eight answers
    contrary_engine = FakeEngine()
    contrary = measure_quality(
        contrary_engine,
        PROMPTS,
        fake_asked(),
        scorers(judge=lambda texts: ["poet"] * len(texts)),
        settings=SETTINGS,
        include_answers=True,
    )
    assert engine.calls == contrary_engine.calls
    assert [a["answer"] for a in first["answers"]] == [a["answer"] for a in contrary["answers"]]
    judge_keys = {"judge_fidelity", "judge_read_misses_as"}
    for side in ("adapter", "base"):
        for lang in ("all", "ru", "en"):
            a, b = first["per_register"]["logician"][side][lang], contrary["per_register"]["logician"][side][lang]
            assert {k: v for k, v in a.items() if k not in judge_keys} == {
                k: v for k, v in b.items() if k not in judge_keys
            }
            assert b["judge_fidelity"] == 0.0


def test_a_judge_reading_before_generation_ends_is_impossible():
    """The readers run after the last batch: a judge that looks at the engine's calls sees them all."""
    engine = FakeEngine()
    asked = fake_asked()

    def judge(texts):
        assert sum(len(call) for call in engine.calls) == len(asked)
        return ["logician"] * len(texts)

    measure_quality(engine, PROMPTS, asked, scorers(judge=judge), settings=SETTINGS, batch=2)


def test_the_eval_set_per_language():
    rows = eval_prompts()
    assert len(rows) >= 200 and {r["lang"] for r in rows} == {"ru", "en"}
    two = eval_prompts(2)
    assert [r["lang"] for r in two].count("ru") == 2 and [r["lang"] for r in two].count("en") == 2
