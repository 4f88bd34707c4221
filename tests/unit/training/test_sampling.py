"""Router-filtered sampling's pure pieces: which texts, which answers are refused, which are kept."""

from __future__ import annotations

import json

import pytest

from scenestream.agents.decoder.engines import Generation
from scenestream.schemas.records import REGISTERS
from scenestream.training.sampling import (
    SampleConfig,
    acceptable,
    language_of,
    load_sampled,
    loops,
    sample_answers,
    select,
    spread_choice,
    training_texts,
)

pytestmark = pytest.mark.unit


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_training_texts_never_include_a_test_text_of_any_corpus(tmp_path):
    write_jsonl(
        tmp_path / "data" / "decoder" / "poet.jsonl",
        [
            {"text": "shared", "lang": "en", "split": "train"},
            {"text": "only poet train", "lang": "en", "split": "train"},
            {"text": "poet test", "lang": "en", "split": "test"},
        ],
    )
    write_jsonl(
        tmp_path / "data" / "decoder" / "logician.jsonl",
        [
            {"text": "shared", "lang": "en", "split": "train"},
            {"text": "poet test", "lang": "en", "split": "train"},  # a test text elsewhere: never sampled
        ],
    )
    write_jsonl(
        tmp_path / "data" / "registers" / "ru.jsonl",
        [
            {"text": "Привет", "lang": "ru", "split": "train"},
            {"text": "shared", "lang": "en", "split": "test"},  # held out by the router's data
        ],
    )
    assert training_texts(tmp_path) == [{"text": "only poet train", "lang": "en"}, {"text": "Привет", "lang": "ru"}]


def test_the_shipped_texts_leave_out_every_held_out_prompt():
    from scenestream.schemas.records import REGISTERS
    from scenestream.training.examples import load_examples

    texts = {t["text"] for t in training_texts()}
    held_out = {row["text"].strip() for r in REGISTERS for row in load_examples(r, "test")}
    assert len(texts) > 1000 and not texts & held_out


def test_language_loops_and_refusals():
    assert language_of("Почему осенью грустно? Because.") == "ru"
    assert language_of("Why is autumn sad? Потому.") == "en"
    assert loops("one two three four and one two three four")
    assert not loops("one two three four five six seven")
    assert acceptable("Первое: свет. Второе: холод. Вывод: гулять днём.", "ru", True) is None
    assert acceptable("Первое: свет. Второе: холод. Вывод: гулять днём.", "en", True) == "wrong language"
    assert acceptable("Первое: свет. Второе: холод. Вывод: гулять днём.", "ru", False) == "unfinished"
    assert acceptable("Да.", "ru", True) == "too short"


def test_select_keeps_the_most_confident_per_text_above_the_weight():
    cands = [
        {"text": "a", "answer": "1"},
        {"text": "a", "answer": "2"},
        {"text": "b", "answer": "3"},
        {"text": "c", "answer": "4"},
    ]
    kept = select(
        cands,
        "logician",
        [0.6, 0.9, 0.4, 0.95],
        ["logician", "logician", "logician", "body"],
        SampleConfig(register="logician", keep_per_text=1, min_weight=0.5),
    )
    assert [k["answer"] for k in kept] == ["2"]  # b is below the weight, c is read as body
    kept = select(
        cands,
        "logician",
        [0.6, 0.9, 0.4, 0.95],
        ["logician"] * 4,
        SampleConfig(register="logician", keep_per_text=2, min_weight=0.5),
    )
    assert [k["answer"] for k in kept] == ["1", "2", "4"] and kept[0]["router_weight"] == 0.6


def test_load_sampled_checks_the_rows_and_takes_the_most_confident(tmp_path):
    path = tmp_path / "logician.jsonl"
    rows = [
        {
            "id": f"logician-sampled-{i:04d}",
            "text": "t",
            "lang": "en",
            "answer": "a",
            "split": "train",
            "router_weight": w,
        }
        for i, w in enumerate([0.6, 0.9, 0.7, 0.95], start=1)
    ]
    write_jsonl(path, rows)
    assert load_sampled(path, "logician") == rows
    surest = load_sampled(path, "logician", most=2, spread=False)
    assert [r["router_weight"] for r in surest] == [0.9, 0.95] and "topic" not in surest[0]
    spread = load_sampled(path, "logician", most=2)  # one text: one topic, so the surest two again
    assert [r["router_weight"] for r in spread] == [0.9, 0.95] and spread[0]["topic"] in REGISTERS
    with pytest.raises(ValueError, match="not sampled poet train rows"):
        load_sampled(path, "poet")
    with pytest.raises(FileNotFoundError, match="sample-answers --register poet"):
        load_sampled(tmp_path / "none.jsonl", "poet")


def test_spread_choice_takes_turns_over_topics_and_languages_surest_first():
    rows = [
        {"topic": t, "lang": lang, "router_weight": w}
        for t, lang, w in [
            ("logician", "en", 0.99),
            ("logician", "en", 0.98),
            ("logician", "ru", 0.97),
            ("logician", "en", 0.96),
            ("body", "en", 0.60),
            ("body", "en", 0.70),
            ("poet", "ru", 0.55),
        ]
    ]
    assert spread_choice(rows, 4) == [5, 0, 2, 6]  # the best of each of the four groups, not the four surest
    assert sorted(spread_choice(rows, 6)) == [0, 1, 2, 4, 5, 6]  # a second turn: body, logician/en
    assert sorted(spread_choice(rows, 100)) == list(range(7))


class ScriptedEngine:
    """An engine interface that answers from a script, to test the filtering around it."""

    name = "scripted"
    model = "scripted"

    def __init__(self, answers):
        self.adapters = {"logician": None}
        self.answers = list(answers)
        self.requests = []

    def generate(self, requests, on_delta=None):
        self.requests += requests
        out = []
        for _ in requests:
            text, tokens = self.answers.pop(0)
            out.append(Generation(text, "logician", 10, tokens, None, 1.0))
        return out


def test_sample_answers_refuses_unfinished_and_off_register_answers_and_counts_why():
    logical = " Premise one: the train leaves at 9. Premise two: the trip takes 3 hours. Therefore it arrives at 12."
    engine = ScriptedEngine(
        [
            (logical, 30),  # kept
            (logical + " And then", 160),  # ran to max_new_tokens: unfinished
            (" The soft rain sings on my window like a lullaby.\nText: next", 160),  # a stop label: finished
            (" Да, да.", 5),  # too short
        ]
    )
    cfg = SampleConfig(register="logician", per_text=2, max_new_tokens=160, min_weight=0.0)
    rows, counts = sample_answers(
        cfg,
        engine,
        [
            {"text": "When does the train arrive?", "lang": "en"},
            {"text": "Sing me something about rain.", "lang": "en"},
        ],
    )
    assert {r.adapter for r in engine.requests} == {"logician"} and len(engine.requests) == 4
    assert counts["sampled"] == 4 and counts["refused"]["unfinished"] == 1 and counts["refused"]["too short"] == 1
    assert [r["answer"] for r in rows] == [logical.strip()]  # the rain answer is read as the poet's
    assert counts["refused"]["router"] == 1 and counts["kept"] == 1
    assert rows[0]["split"] == "train" and rows[0]["source"] == "sampled" and rows[0]["id"] == "logician-sampled-0001"
    assert rows[0]["topic"] in REGISTERS  # what the router reads the text itself as


def test_sample_answers_needs_the_registers_adapter():
    engine = ScriptedEngine([])
    engine.adapters = {}
    with pytest.raises(RuntimeError, match="no logician adapter"):
        sample_answers(SampleConfig(register="logician"), engine, [{"text": "x", "lang": "en"}])


def test_sampled_answers_that_invent_sources_are_refused():
    from scenestream.training.sampling import acceptable

    assert (
        acceptable("According to research, sleep comes in cycles of ninety minutes.", "en", True) == "invented sources"
    )
    assert acceptable("По данным ВОЗ, взрослому нужно спать семь часов.", "ru", True) == "invented sources"
    assert acceptable("Sleep comes in cycles, so waking between them feels easier.", "en", True) is None


def test_sampled_answers_with_markup_are_refused():
    from scenestream.training.sampling import acceptable

    tagged = 'Пример для дробей с показателем <math class="unit-simple"> 9 × 8 </math> проверяется делением.'
    assert acceptable(tagged, "ru", True) == "markup"
    assert acceptable("A line ends here</i> and the rest follows it.", "en", True) == "markup"
    assert acceptable("If a < b and b > c, nothing follows about a and c.", "en", True) is None


def test_sample_answers_refuses_answers_that_invent_sources_before_the_router_reads_them(monkeypatch):
    """`sample-answers` end to end (scripted engine, the real router): an answer citing what the model cannot
    know is refused and counted, whatever the router would make of it; a clean answer to the same text is kept."""
    import scenestream.training.examples as examples

    logical = " Premise one: the train leaves at 9. Premise two: the trip takes 3 hours. Therefore it arrives at 12."
    citing = [
        " Premise one: the train leaves at 9 [1]. Premise two: the trip takes 3 hours. Therefore it arrives at 12.",
        " По данным РЖД, поезд уходит в 9. Дорога занимает 3 часа. Следовательно, он прибудет в 12.",
        " Исследования показывают, что поезд уходит в 9. Дорога занимает 3 часа. Значит, он прибудет в 12.",
    ]
    # two answers per text, in order: the English text's, then the Russian text's (each in its language)
    engine = ScriptedEngine([(citing[0], 30), (logical, 30), (citing[1], 30), (citing[2], 30)])
    read: list[str] = []
    real_reading = examples.router_reading

    def reading(texts, *args, **kwargs):
        read.extend(texts)
        return real_reading(texts, *args, **kwargs)

    monkeypatch.setattr(examples, "router_reading", reading)
    cfg = SampleConfig(register="logician", per_text=2, max_new_tokens=160, min_weight=0.0)
    rows, counts = sample_answers(
        cfg,
        engine,
        [{"text": "When does the train arrive?", "lang": "en"}, {"text": "Когда прибудет поезд?", "lang": "ru"}],
    )
    assert counts["sampled"] == 4 and counts["refused"]["invented sources"] == 3
    assert [r["answer"] for r in rows] == [logical.strip()]
    assert not any(text.strip() in read for text in citing)  # refused before the router saw them
