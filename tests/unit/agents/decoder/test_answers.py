"""Answer checks: language, loops, finished sentences, trimming, invented sources."""

from __future__ import annotations

import pytest

from scenestream.agents.decoder.answers import (
    SOURCE_PATTERNS,
    close_sentence,
    finished,
    invented_sources,
    language_of,
    loops,
    trim_to_clause,
    trim_to_sentence,
)


def test_language_of():
    assert language_of("Привет, как дела?") == "ru"
    assert language_of("Hello, how are you?") == "en"
    assert language_of("Скорость 300 000 km/s, то есть очень быстро.") == "ru"
    assert language_of("The word «дом» means house.") == "en"


def test_loops():
    assert loops("the sea is blue and the sea is blue again")
    assert loops("Море синее и тихое, МОРЕ СИНЕЕ И тихое")
    assert not loops("the sea is blue and the sky is grey")
    assert not loops("a b c a b d", n=3)
    assert loops("a b c a b c", n=3)


@pytest.mark.parametrize(
    "text",
    [
        "Done.",
        "Готово!",
        "Really?!",
        "Ну…",
        "Wait...",
        "Он сказал: «Да.»",
        "(see it.)",
        'She said "yes."  ',
        "Так и есть?»\n",
    ],
)
def test_finished(text):
    assert finished(text)


@pytest.mark.parametrize("text", ["", "Done", "Готово, но", "«Да»", "a (b)", "Он сказал: «Да", "Версия 2.5 вышла"])
def test_not_finished(text):
    assert not finished(text)


def test_trim_to_sentence():
    assert trim_to_sentence("One. Two.") == "One. Two."
    assert trim_to_sentence("One. Two is 2.5 and thr") == "One."
    assert trim_to_sentence("Первое! Второе? Третье без конца") == "Первое! Второе?"
    assert trim_to_sentence("Он сказал: «Да.» А потом") == "Он сказал: «Да.»"
    assert trim_to_sentence("no sentence ends here") == ""
    assert trim_to_sentence("") == ""
    assert trim_to_sentence("Wait... and then") == "Wait..."


def test_trim_to_clause():
    assert trim_to_clause("1) define it; 2) count them; 3) and th") == "1) define it; 2) count them;"
    assert trim_to_clause("a;b; c") == "a;b;"  # a clause ends where whitespace follows the ";"
    assert trim_to_clause("a; b;") == "a;" and trim_to_clause("no clause ends here") == ""


def test_close_sentence():
    assert close_sentence("Вода дышит сердцем и голосом") == "Вода дышит сердцем и голосом."
    assert close_sentence("a; b; c;") == "a; b; c."
    assert close_sentence("one, two —") == "one, two."
    assert close_sentence("Done!") == "Done!"
    assert close_sentence("") == ""
    assert close_sentence(";") == ";"  # nothing to close


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Сон важен, по данным ВОЗ, для всех.", ["по данным", "ВОЗ"]),
        ("Исследования показывают, что сон нужен.", ["Исследования показывают"]),
        ("Согласно исследованиям, это так.", ["Согласно исследованиям"]),
        ("Учёные доказали, что кофе бодрит.", ["Учёные доказали"]),
        ("Эксперты ООН и Гарвардский университет согласны.", ["ООН", "Гарвардский"]),
        ("Как пишет Иванов (Иванов, 2019), с. 45.", ["(Иванов, 2019)", "с. 45"]),
        ("Подробнее (см. таблицу 2) в отчёте.", ["(см. таблицу 2)"]),
        ("Sleep matters [1]. Coffee too [4, 5].", ["[1]", "[4, 5]"]),
        ("It varies (see also section below).", ["(see also section below)"]),
        ("According to research, naps help.", ["According to research"]),
        ("According to a study, naps help.", ["According to a study"]),
        ("according to scientists and experts", ["according to scientists"]),
        ("Studies show that research shows nothing.", ["Studies show", "research shows"]),
        ("A Harvard study found that the WHO agrees.", ["Harvard", "study found", "WHO"]),
        ("Smith et al. reported it, doi:10.1000/xyz123.", ["et al.", "doi:10.1000/xyz123."]),
        ("Read https://example.com/page or www.sleep.org today.", ["https://example.com/page", "www.sleep.org"]),
        ("As NASA says, the Moon is far.", ["NASA"]),
        ("It was published in Nature last year.", ["in Nature"]),
    ],
)
def test_invented_sources_found(text, expected):
    assert invented_sources(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Я прочитал книгу.",
        "Во-первых, определим сон; во-вторых, посчитаем часы.",
        "Скорость света ≈ 300 000 км/с. 150 000 000 / 300 000 = 500 секунд.",
        "Данные за неделю покажут, помогает ли режим.",
        "I read a book about the sea.",
        "Who knows what the sea remembers? Nature has its own science.",
        "First, define the terms; second, check each step. Therefore 7 × 8 = 56.",
        "Study the map, then research the route yourself.",
        "The list [a, b] has two items, and 2 + 2 = 4.",
        "Смотрите ниже на воду: она прозрачная.",
    ],
)
def test_invented_sources_not_found(text):
    assert invented_sources(text) == []


def test_every_pattern_group_has_a_comment_and_patterns():
    assert set(SOURCE_PATTERNS) >= {
        "bracketed reference",
        "see also",
        "research says (en)",
        "research says (ru)",
        "named source",
        "scholarly apparatus",
        "link",
    }
    assert all(SOURCE_PATTERNS.values())
