"""The emotional field of a text: valence, arousal, tension, rhythm.

From punctuation, sentence and word length, and the shipped affect lexicon
(``lexicon/affect.json``: word stems matched as prefixes, per language). Pure
and cheap: no embeddings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LEXICON = Path(__file__).with_name("lexicon") / "affect.json"
_WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*", re.UNICODE)
_SENTENCE = re.compile(r"[.!?…]+|\n+")


@dataclass(frozen=True)
class Affect:
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    high_arousal: tuple[str, ...]
    low_arousal: tuple[str, ...]
    tension: tuple[str, ...]
    negation: frozenset[str]
    intensifiers: frozenset[str]


@cache
def affect(lang: str) -> Affect:
    data = json.loads(LEXICON.read_text(encoding="utf-8"))
    lex = data.get(lang) or data["en"]
    return Affect(
        positive=tuple(lex["positive"]),
        negative=tuple(lex["negative"]),
        high_arousal=tuple(lex["high_arousal"]),
        low_arousal=tuple(lex["low_arousal"]),
        tension=tuple(lex["tension"]),
        negation=frozenset(lex["negation"]),
        intensifiers=frozenset(lex["intensifiers"]),
    )


def _clip(value: float, low: float, high: float) -> float:
    return round(max(low, min(high, value)), 4)


def rhythm_of(text: str, words: list[str]) -> str:
    """staccato (short sentences), measured, flowing (long sentences), fragmented (ellipses, dashes)."""
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    if not words:
        return "silent"
    breaks = text.count("…") + text.count("...") + text.count(" — ") + text.count(" - ")
    if breaks >= 2 or (breaks and len(sentences) <= 1 and len(words) < 10):
        return "fragmented"
    per_sentence = len(words) / max(1, len(sentences))
    if per_sentence < 6:
        return "staccato"
    if per_sentence <= 14:
        return "measured"
    return "flowing"


def field_of(text: str, lang: str) -> dict:
    """valence [-1,1], arousal [0,1], tension [0,1], rhythm."""
    lex = affect("ru" if lang == "ru" else "en")
    words = [w.lower() for w in _WORD.findall(text)]
    pos = neg = high = low = tense = intens = negs = 0.0
    flip = 0
    for word in words:
        if word in lex.negation:
            negs += 1
            flip = 2  # a negation turns the polarity of the next two words
            continue
        if word in lex.intensifiers:
            intens += 1
            continue
        sign = -1 if flip else 1
        flip = max(0, flip - 1)
        if word.startswith(lex.positive):
            pos, neg = (pos + 1, neg) if sign > 0 else (pos, neg + 0.5)
        elif word.startswith(lex.negative):
            pos, neg = (pos, neg + 1) if sign > 0 else (pos + 0.5, neg)
        if word.startswith(lex.high_arousal):
            high += 1
        if word.startswith(lex.low_arousal):
            low += 1
        if word.startswith(lex.tension):
            tense += 1
    n = max(1, len(words))
    exclaims = text.count("!")
    questions = text.count("?")
    letters = [c for c in text if c.isalpha()]
    caps = sum(c.isupper() for c in letters) / max(1, len(letters))
    valence = (pos - neg) / (pos + neg + 1.0)
    arousal = (
        0.3 + 0.15 * min(exclaims, 3) + 0.6 * max(0.0, caps - 0.3) + 0.5 * (high - 0.7 * low) / n**0.5 + 0.05 * intens
    )
    tension = (
        0.1 + 0.12 * min(questions, 3) + 0.5 * tense / n**0.5 + 0.08 * min(negs, 3) + 0.25 * neg / (pos + neg + 1.0)
    )
    return {
        "valence": _clip(valence, -1.0, 1.0),
        "arousal": _clip(arousal, 0.0, 1.0),
        "tension": _clip(tension, 0.0, 1.0),
        "rhythm": rhythm_of(text, words),
    }
