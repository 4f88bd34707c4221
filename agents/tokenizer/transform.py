"""raw-text → tokens, as a pure function (no Kafka).

from scenestream.agents.tokenizer.transform import Tokenizer
Tokenizer.default().tokenize(raw_text)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

from scenestream.agents.tokenizer import stopwords
from scenestream.agents.tokenizer.symbols import normalize, split_symbols
from scenestream.schemas.codec import SchemaError
from scenestream.schemas.records import Hypertoken, RawText, Tokens

SHIPPED_MODEL = Path(__file__).with_name("spm.model")
WORD_START = "▁"


class InputError(SchemaError):
    """A well-formed record whose text the tokenizer refuses (empty, too long)."""


def check_size(text: str, max_bytes: int) -> None:
    """Raise :class:`InputError` (``too_long``) for a text over ``max_bytes`` of UTF-8: the stage's rule, which
    ``ingest`` and ``ask`` also apply before publishing."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise InputError(f"text is {size} bytes, over the limit of {max_bytes}", "too_long")


def detect_lang(text: str) -> str:
    """ru / en by the dominant script of the letters; ``und`` when neither dominates."""
    cyr = lat = 0
    for ch in text:
        if "\u0400" <= ch <= "\u04ff":
            cyr += 1
        elif "a" <= ch <= "z" or "A" <= ch <= "Z":
            lat += 1
    if cyr == lat == 0:
        return "und"
    if cyr >= 2 * lat:
        return "ru"
    if lat >= 2 * cyr:
        return "en"
    return "mixed"


def _is_content(word: str) -> bool:
    letters = sum(ch.isalpha() for ch in word)
    return letters >= 2 and letters >= len(word) / 2 and word not in stopwords.ALL


@dataclass
class Tokenizer:
    """SentencePiece pieces plus hypertokens (salient content units) and symbols."""

    model_path: Path = SHIPPED_MODEL
    hypertokens_max: int = 12
    max_text_bytes: int = 16 * 1024

    @classmethod
    def from_settings(cls, settings) -> Tokenizer:
        return cls(
            model_path=settings.tokenizer_model or SHIPPED_MODEL,
            hypertokens_max=settings.hypertokens_max,
            max_text_bytes=settings.max_text_bytes,
        )

    @cached_property
    def sp(self):
        import sentencepiece as spm

        if not Path(self.model_path).exists():
            raise FileNotFoundError(
                f"SentencePiece model {self.model_path} not found; train it with "
                "`python -m scenestream.ops.train_tokenizer`"
            )
        return spm.SentencePieceProcessor(model_file=str(self.model_path))

    def check(self, text: str) -> None:
        """Raise :class:`InputError` for text the stage must not tokenize."""
        if not text or not text.strip():
            raise InputError("text is empty or whitespace only", "empty_text")
        check_size(text, self.max_text_bytes)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"text is not valid Unicode: {exc}", "invalid_utf8") from exc

    def hypertokens(self, pieces: list[str], ids: list[int], symbols: list[str]) -> list[Hypertoken]:
        """Words made of pieces, stop words dropped, ranked by surprisal under the unigram model."""
        sp = self.sp
        words: list[tuple[str, float]] = []
        boundary = True
        for piece, pid in zip(pieces, ids):
            if piece in symbols:  # a symbol ends the word before it and is no word itself
                boundary = True
                continue
            score = -sp.get_score(pid) if not sp.is_unknown(pid) and not sp.is_control(pid) else 12.0
            if piece.startswith(WORD_START) or boundary:
                boundary = False
                words.append((piece.lstrip(WORD_START), score))
            else:
                text, total = words[-1]
                words[-1] = (text + piece, total + score)
        surprisal_of: dict[str, float] = {}
        count: dict[str, int] = {}
        for word, surprisal in words:
            word = word.strip(".,!?;:«»\"'()[]—–-…")
            if _is_content(word):
                surprisal_of[word] = max(surprisal, surprisal_of.get(word, 0.0))
                count[word] = count.get(word, 0) + 1
        if not surprisal_of:
            return []
        # a repeated word matters more: +50% per repetition
        weights = {word: s * (1 + 0.5 * (count[word] - 1)) for word, s in surprisal_of.items()}
        top = max(weights.values())
        ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[: self.hypertokens_max]
        return [Hypertoken(text=w, weight=round(v / top, 4)) for w, v in ranked]

    def encode(self, normalized: str) -> tuple[list[str], list[int]]:
        """Pieces and ids; every symbol (an emoji sequence too) is exactly one piece."""
        sp = self.sp
        pieces: list[str] = []
        after_space = True
        for segment, is_symbol in split_symbols(normalized):
            if is_symbol:
                if after_space:
                    pieces.append(WORD_START)
                pieces.append(segment)
                after_space = False
                continue
            text = segment.strip()
            if text:
                sub = sp.encode(text, out_type=str)
                if not (after_space or segment[0].isspace()):  # glued to the symbol before it
                    sub[0] = sub[0][len(WORD_START) :] if sub[0].startswith(WORD_START) else sub[0]
                    if not sub[0]:
                        sub.pop(0)
                pieces += sub
            after_space = segment[-1].isspace()
        return pieces, [sp.piece_to_id(piece) for piece in pieces]

    def tokenize(self, raw: RawText) -> Tokens:
        started = time.perf_counter()
        self.check(raw.text)
        normalized, symbols = normalize(raw.text)
        if not normalized:
            raise InputError("text has nothing left after normalization", "empty_text")
        pieces, ids = self.encode(normalized)
        return Tokens(
            message_id=raw.message_id,
            session_id=raw.session_id,
            tenant=raw.tenant,
            text=raw.text,
            normalized=normalized,
            lang=detect_lang(normalized),
            pieces=pieces,
            ids=ids,
            hypertokens=self.hypertokens(pieces, ids, symbols),
            symbols=symbols,
            ts_ms=raw.ts_ms,
            timings_ms={"tokenize": round((time.perf_counter() - started) * 1000, 3)},
            replay_of=raw.replay_of,
            force_register=raw.force_register,
            params=raw.params,
        )


_default: Optional[Tokenizer] = None


def default_tokenizer() -> Tokenizer:
    global _default
    if _default is None:
        _default = Tokenizer()
    return _default
