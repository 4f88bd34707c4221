"""Checks of one answer's text, pure and cheap: its language, whether it loops or holds markup, whether it is
finished, cutting it back to its last whole sentence or clause or closing the one the model ended, and the sources
it cites that a 270M model cannot know.

Gemma 3 270M writes fluent citations it has never read: "[4]", "according to a Harvard study", "по данным ВОЗ".
The registers' voices never cite anything (the logician reasons from definitions and steps, never from
authorities), so any such citation is invented. ``invented_sources`` finds them with the pattern table
``SOURCE_PATTERNS`` below, in Russian and English.
"""

from __future__ import annotations

import re

_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
_LATIN = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"\w+")

# a sentence ends with . ! ? or … (any run of them, "?!", "..."), optionally followed by closing quotes or brackets
_CLOSERS = "\"'»”’)]}"
_SENTENCE_END = re.compile(rf"[.!?…]+[{re.escape(_CLOSERS)}]*")
_FINISHED = re.compile(rf"[.!?…]+[{re.escape(_CLOSERS)}]*\s*$")


def language_of(text: str) -> str:
    """``ru`` where Cyrillic letters outnumber Latin ones, else ``en``."""
    return "ru" if len(_CYRILLIC.findall(text)) > len(_LATIN.findall(text)) else "en"


_MARKUP = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")  # an HTML/XML tag: "<mml>", "</i>", '<math class="x">'


def markup(text: str) -> bool:
    """True when the text holds an HTML/XML tag, with or without attributes ("<mml>", '<math class="x">'): never
    part of a register's voice. (The decoder removes short bare tags from answers, ``prompt._TAG``; this also sees
    the tags with attributes it leaves.)"""
    return bool(_MARKUP.search(text))


def loops(text: str, n: int = 4) -> bool:
    """True when some word n-gram (casefolded) occurs twice: the small model's way of going round in circles."""
    words = _WORD.findall(text.casefold())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def finished(text: str) -> bool:
    """True when the text ends a sentence: . ! ? … (or a run of them), possibly followed by closing quotes or
    brackets ("Так.»", "(see above.)"), then only whitespace."""
    return bool(_FINISHED.search(text))


def trim_to_sentence(text: str) -> str:
    """The text cut after its last complete sentence (right-stripped); the text unchanged when it is finished, and
    "" when no sentence in it is complete. A full stop inside a number ("2.5") ends no sentence."""
    if finished(text):
        return text
    end = 0
    for match in _SENTENCE_END.finditer(text):
        after = text[match.end() : match.end() + 1]
        if after == "" or after.isspace():
            end = match.end()
    return text[:end].rstrip()


def trim_to_clause(text: str) -> str:
    """The text cut after its last clause end, a ";" followed by whitespace ("1) define it; 2) count" → "1) define
    it;"); "" when it has none. For a first sentence the token limit cut, which has no sentence end to go back to:
    :func:`close_sentence` then ends the clause with a full stop."""
    end = 0
    for match in _CLAUSE_END.finditer(text):
        end = match.end()
    return text[:end]


_CLAUSE_END = re.compile(r";(?=\s)")

# what may trail a clause without ending a sentence: "a, b;" "c:" "d —"
_OPEN_TAIL = ",;:—–- \t\n"


def open_tail(text: str) -> str:
    """The text without trailing clause punctuation (, ; : dashes) and whitespace: what of an unfinished answer
    can be streamed, so that :func:`close_sentence` can still end it with a full stop."""
    return text.rstrip(_OPEN_TAIL)


def close_sentence(text: str) -> str:
    """An answer the model itself ended (its end of text, or a new block) without a sentence end, closed with a
    full stop after its last word: "…голосом" → "…голосом.", "a; b;" → "a; b."; a finished or empty text
    unchanged. Never for an answer the token limit cut: that one is trimmed (:func:`trim_to_sentence`)."""
    if not text or finished(text):
        return text
    body = open_tail(text)
    return body + "." if body else text


# Citations a 270M model cannot know, in groups. Every pattern is matched case-insensitively; a part written
# (?-i:...) must match in its own case (the abbreviation "WHO" is a source, the word "who" is not).
SOURCE_PATTERNS: dict[str, list[str]] = {
    # numbered references: "[1]", "[4, 5]", "[12–14]"
    "bracketed reference": [r"\[\s*\d+(?:\s*[,–-]\s*\d+)*\s*\]"],
    # pointers to parts of a document that does not exist: "(see also section below)", "(см. таблицу 2)"
    "see also": [
        r"\(\s*(?:see|cf\.|см\.)[^()\n]{0,60}\)",
        r"\bsee (?:also )?(?:the )?(?:(?:section|chapter|table|figure|fig\.|appendix)(?: \d+| below| above)?|below"
        r"|above)\b",
        r"(?<!\w)см\.\s*(?:также\s*)?(?:(?:раздел|главу|таблицу|рис\.|рисунок|приложение)(?: \d+| ниже| выше)?|ниже"
        r"|выше)",
    ],
    # research as an authority, English: "according to research", "studies show", "a study by …"
    "research says (en)": [
        r"\baccording to (?:a |the |recent |new |some |many )?(?:research|studies|study|scientists|experts"
        r"|researchers|doctors|statistics|data|surveys?|latest data)\b",
        r"\b(?:studies|research|science|scientists|experts|statistics|surveys?) (?:show|shows|showed|suggest"
        r"|suggests|prove|proves|proved|have shown|has shown|confirm|confirms|found|indicate|indicates)\b",
        r"\b(?:(?:a|one|recent|new) )?(?:study|survey|paper|meta-analysis) (?:by|from|published|found|showed"
        r"|shows)\b",
        r"\bscientifically proven\b",
    ],
    # research as an authority, Russian: "по данным", "исследования показывают", "учёные доказали"
    "research says (ru)": [
        r"\bпо данным\b",
        r"\bпо (?:мнению|словам|оценкам) (?:учён|учен|эксперт|специалист|врач|исследовател)\w*",
        r"\bсогласно (?:последним |новым |недавним |многим )?(?:исследовани|данн|статистик|опрос)\w*",
        r"\b(?:исследования|исследование|учёные|ученые|эксперты|специалисты|статистика|опросы)"
        r" (?:показывают|показывает|показали|показало|доказали|доказывают|подтверждают|подтвердили|утверждают"
        r"|установили|выяснили)\b",
        r"\b(?:учёными|учеными) (?:доказано|установлено|выяснено)\b",
        r"\bнаучно доказано\b",
        r"\bопубликованн\w* в журнале\b",
    ],
    # named organisations, universities and journals used as sources ("по данным ВОЗ", "a Harvard study")
    "named source": [
        r"(?-i:\b(?:WHO|ВОЗ|ООН|UN|UNESCO|ЮНЕСКО|NASA|НАСА|CDC|NIH|FDA|OECD|ОЭСР|IMF|МВФ|РАН|MIT)\b)",
        r"(?-i:\b(?:Минздрав|Росстат|Гарвард|Стэнфорд|Оксфордск|Кембриджск)\w*)",
        r"(?-i:\b(?:Harvard|Stanford|Yale|Mayo Clinic|World Health Organi[sz]ation|PubMed|Wikipedia|The Lancet)\b)",
        r"(?-i:\bВикипеди\w*|\bВсемирн\w+ организаци\w+ здравоохранения)",
        r"(?-i:\b(?:University of [A-Z]\w+|[A-Z]\w+ University)\b)",
        r"\b(?:in|journal|журнал\w*) (?-i:(?:Nature|Science|Lancet|Cell))\b",
    ],
    # scholarly apparatus: "et al.", "doi:", "ibid.", "(Smith, 2019)", "pp. 12–15", "там же", "с. 45", ISBN
    "scholarly apparatus": [
        r"\bet al\b\.?",
        r"\bdoi\s*:\s*\S+",
        r"\bibid\b\.?",
        r"(?-i:\([A-ZА-ЯЁ][\w-]+(?: (?:and|&|и) [A-ZА-ЯЁ][\w-]+)?(?: et al\.)?,? (?:19|20)\d\d\))",
        r"\bpp?\.\s*\d+(?:\s*[–-]\s*\d+)?",
        r"\bтам же\b",
        r"(?:^|(?<=[\s(]))с\.\s*\d+(?:\s*[–-]\s*\d+)?",  # "с. 45" (page), not "км/с. 150"
        r"\bISBN[\s:]*[\d-]{10,}",
    ],
    # links: URLs and bare domains
    "link": [
        r"\bhttps?://\S+",
        r"\bwww\.\S+",
        r"\b[\w-]+\.(?:com|org|net|gov|edu|ru|рф|io)\b(?:/\S*)?",
    ],
}

_COMPILED = [re.compile(pattern, re.IGNORECASE) for patterns in SOURCE_PATTERNS.values() for pattern in patterns]


def invented_sources(text: str) -> list[str]:
    """The snippets of ``text`` that cite a source (``SOURCE_PATTERNS``), in order of appearance, overlapping matches
    merged into the longest."""
    spans = sorted({m.span() for rx in _COMPILED for m in rx.finditer(text) if m.end() > m.start()})
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [text[start:end].strip() for start, end in merged]
