"""The evaluation prompts and the judge's style set are disjoint from everything training, sampling or the router
ever reads.

A judge is never also the filter: ``data/eval/prompts.jsonl`` (the prompts answers are judged on) and
``data/judge/style.jsonl`` (what the judge learns the registers' voices from) must share no text with the decoder
corpora (texts and answers), the sampled answers, the router's labelled texts, the paraphrases or the tokenizer
corpus. Texts are compared normalised (casefolded, ё as е, punctuation dropped, whitespace collapsed): equal
texts are refused, and so is any run of ``RUN`` consecutive words that two texts share (a near-duplicate).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "data"
PROMPTS = DATA / "eval" / "prompts.jsonl"
STYLE = DATA / "judge" / "style.jsonl"
RUN = 8  # consecutive words two texts may not share
_PUNCT = re.compile(r"[^\w\s]|_")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def normalise(text: str) -> str:
    """Casefolded, ё as е, punctuation dropped, whitespace collapsed."""
    text = _PUNCT.sub(" ", text.casefold().replace("ё", "е"))
    return " ".join(text.split())


def runs(text: str, n: int = RUN) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive words of the normalised text."""
    words = normalise(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def training_texts(data: Path = DATA) -> list[str]:
    """Every text training, sampling or the router reads: decoder texts and answers, sampled texts and answers,
    the router's labelled texts, both sides of each paraphrase pair, and every line of the tokenizer corpus."""
    texts: list[str] = []
    for path in sorted((data / "decoder").glob("*.jsonl")) + sorted((data / "decoder" / "sampled").glob("*.jsonl")):
        for row in read_jsonl(path):
            texts += [row["text"], row["answer"]]
    for path in sorted((data / "registers").glob("*.jsonl")):
        texts += [row["text"] for row in read_jsonl(path)]
    for path in sorted((data / "paraphrases").glob("*.jsonl")):
        for row in read_jsonl(path):
            texts += [row["a"], row["b"]]
    for path in sorted((data / "corpus").glob("*.txt")):
        texts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts


def clashes(texts: Sequence[str], others: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(text, other, why)`` for each of ``texts`` equal to one of ``others`` after normalising ("equal") or sharing
    ``RUN`` consecutive words with it ("shares N words")."""
    by_norm: dict[str, str] = {}
    by_run: dict[tuple[str, ...], str] = {}
    for other in others:
        by_norm.setdefault(normalise(other), other)
        for run in runs(other):
            by_run.setdefault(run, other)
    found = []
    for text in texts:
        norm = normalise(text)
        if norm in by_norm:
            found.append((text, by_norm[norm], "equal"))
            continue
        shared = next((run for run in sorted(runs(text)) if run in by_run), None)
        if shared is not None:
            found.append((text, by_run[shared], f"shares {RUN} words: {' '.join(shared)}"))
    return found


def test_eval_prompts_are_disjoint_from_training_data_and_the_style_set():
    prompts = [row["text"] for row in read_jsonl(PROMPTS)]
    style = [row["text"] for row in read_jsonl(STYLE)]
    assert clashes(prompts, training_texts() + style) == []


def test_style_set_is_disjoint_from_training_data_and_the_eval_prompts():
    prompts = [row["text"] for row in read_jsonl(PROMPTS)]
    style = [row["text"] for row in read_jsonl(STYLE)]
    assert clashes(style, training_texts() + prompts) == []


def test_the_checker_catches_planted_duplicates():
    training = training_texts()
    corpus_line = next(line for line in training if len(normalise(line).split()) >= RUN + 4)
    planted_equal = "  " + corpus_line.upper().replace(",", " ;") + "!!"  # equal once normalised
    words = corpus_line.split()
    planted_near = "Tell me, " + " ".join(words[1 : RUN + 2]) + " and then something else entirely."
    fresh = "A sentence that no file of this project could possibly contain, zebra quartz violin."
    found = clashes([planted_equal, planted_near, fresh], training)
    assert [(text, why.split(":")[0]) for text, _, why in found] == [
        (planted_equal, "equal"),
        (planted_near, f"shares {RUN} words"),
    ]
    # seven shared words are allowed, eight are not
    seven = " ".join(f"w{i}" for i in range(RUN - 1))
    assert clashes([f"x {seven} y"], [f"a {seven} b"]) == []
    assert clashes([f"x {seven} w7 y"], [f"a {seven} w7 b"]) != []


def test_normalise():
    assert normalise("  Ёлка,   ёжик — ЁЖ!\n") == "елка ежик еж"
    assert normalise("Don't  STOP... (now)") == "don t stop now"


def test_eval_prompts_counts_languages_and_themes():
    rows = read_jsonl(PROMPTS)
    assert len(rows) >= 200
    assert {row["lang"] for row in rows} == {"ru", "en"}
    langs = Counter(row["lang"] for row in rows)
    assert langs["ru"] == langs["en"]
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({normalise(row["text"]) for row in rows}) == len(rows)
    for lang in ("ru", "en"):
        themes = Counter(row["theme"] for row in rows if row["lang"] == lang)
        assert len(themes) >= 12
        assert max(themes.values()) - min(themes.values()) <= 1, themes  # spread evenly
    for row in rows:
        assert set(row) == {"id", "lang", "theme", "text"}
        assert row["id"] == f"eval-{row['lang']}-{row['id'].rsplit('-', 1)[1]}"
        cyrillic = len(re.findall(r"[а-яё]", row["text"], re.IGNORECASE))
        latin = len(re.findall(r"[a-z]", row["text"], re.IGNORECASE))
        assert (cyrillic > latin) == (row["lang"] == "ru"), row


def test_style_set_covers_every_register_theme_and_language():
    rows = read_jsonl(STYLE)
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({normalise(row["text"]) for row in rows}) == len(rows)
    registers = {row["register"] for row in rows}
    themes = {row["theme"] for row in rows}
    assert len(registers) >= 4 and len(themes) >= 12
    cells = Counter((row["register"], row["theme"], row["lang"]) for row in rows)
    assert set(cells) == {(r, t, lang) for r in registers for t in themes for lang in ("ru", "en")}
    assert min(cells.values()) >= 4
    # split by whole themes: a theme is either all train or all test
    split_of = {}
    for row in rows:
        assert split_of.setdefault(row["theme"], row["split"]) == row["split"], row
    test_share = sum(row["split"] == "test" for row in rows) / len(rows)
    assert 0.2 <= test_share <= 0.3
