"""Symbols kept whole by the tokenizer: emoji, Δ-codes and math symbols.

They are SentencePiece user-defined symbols (so the model never splits them),
escape case folding in normalization, and are listed in ``Tokens.symbols``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

DELTA_CODES = 256  # Δ0 … Δ255: room for the scene builder's codebook
MATH = "∑∏∫∮√∛∞≈≠≡≤≥±×÷∂∇∆∈∉∋⊂⊃⊆⊇∪∩∧∨¬∀∃∄∅→←↔⇒⇐⇔↦∝∴∵∠⊥∥°′″‰ℕℤℚℝℂπ"
_DELTA = r"Δ\d{1,4}"


@lru_cache(maxsize=1)
def user_defined_symbols() -> list[str]:
    """What the SentencePiece model must keep as single pieces."""
    import emoji

    qualified = emoji.STATUS["fully_qualified"]
    emojis = sorted(
        e
        for e, data in emoji.EMOJI_DATA.items()
        if data.get("status") == qualified and (len(e) == 1 or (len(e) == 2 and e[1] == "\ufe0f"))
    )
    return [f"Δ{n}" for n in range(DELTA_CODES)] + list(MATH) + emojis


_DELTA_OR_MATH = re.compile(_DELTA + "|[" + re.escape(MATH) + "]")


def _may_hold_symbols(text: str) -> bool:
    # plain Latin/Cyrillic text (the common case) skips the emoji scan
    return "Δ" in text or any(ord(ch) >= 0x2000 for ch in text)


def split_symbols(text: str) -> list[tuple[str, bool]]:
    """``text`` as (segment, is_symbol) pairs, in order."""
    if not _may_hold_symbols(text):
        return [(text, False)] if text else []
    import emoji

    spans = [(m.start(), m.end()) for m in _DELTA_OR_MATH.finditer(text)]
    spans += [(e["match_start"], e["match_end"]) for e in emoji.emoji_list(text)]
    out: list[tuple[str, bool]] = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos:  # overlapping match (e.g. a math sign inside an emoji sequence)
            continue
        if start > pos:
            out.append((text[pos:start], False))
        out.append((text[start:end], True))
        pos = end
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def normalize(text: str) -> tuple[str, list[str]]:
    """NFKC + case folding + collapsed whitespace, symbols untouched; returns (text, symbols)."""
    parts = []
    symbols = []
    for segment, is_symbol in split_symbols(unicodedata.normalize("NFC", text)):
        if is_symbol:
            symbols.append(segment)
            parts.append(segment)
        else:
            parts.append(unicodedata.normalize("NFKC", segment).casefold())
    return " ".join("".join(parts).split()), symbols
