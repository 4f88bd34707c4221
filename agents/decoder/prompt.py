"""Scene → the adapter's input text (pure).

The prompt names what the scene builder found (register, Δ-code, linkage,
field) and, when memory recalled earlier scenes, their echoes; labels are in
the text's language so the base model answers in it.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from scenestream.schemas.records import Scene

LABELS = {
    "ru": {"text": "Текст", "answer": "Ответ", "echo": "Отзвук"},
    "en": {"text": "Text", "answer": "Answer", "echo": "Echo"},
}


def labels_for(lang: str) -> dict[str, str]:
    return LABELS["ru" if lang == "ru" else "en"]


def scene_header(scene: Scene, register: str) -> str:
    f = scene.field
    return (
        f"<scene register={register} {scene.delta_code} linkage={scene.linkage} "
        f"valence={f.valence:+.2f} arousal={f.arousal:.2f} tension={f.tension:.2f} rhythm={f.rhythm}>"
    )


def build_prompt(scene: Scene, register: Optional[str] = None, echoes: Sequence[dict] = ()) -> str:
    """The text the adapter continues; ``echoes`` are recalled scenes ({text, answer?}) from memory."""
    register = register or scene.register
    label = labels_for(scene.lang)
    lines = [scene_header(scene, register)]
    for echo in list(echoes)[:3]:
        said = echo.get("answer")
        lines.append(f"{label['echo']}: {echo.get('text', '')}" + (f" → {said}" if said else ""))
    lines.append(f"{label['text']}: {scene.text.strip()}")
    lines.append(f"{label['answer']}:")
    return "\n".join(lines)


STOPS = ("\n<scene", "<scene", "\nТекст:", "\nText:", "\nОтвет:", "\nAnswer:", "\n\n\n")


def _cut(raw: str) -> int:
    """Where the answer ends in ``raw``: the first stop (a new scene, text or answer label), else its end."""
    cut = len(raw)
    for stop in STOPS:
        at = raw.find(stop)
        if at != -1:
            cut = min(cut, at)
    return cut


# HTML-like tags the small model writes around lines ("…голосом</i>", "</p>", "<br>"): never part of an answer.
# Only short bare tags are removed, and only such a tag's beginning is held back at the end of a growing answer,
# so removing them never changes what was already streamed.
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]{0,9} ?/?>")
_TAG_START = re.compile(r"</?(?:[A-Za-z][A-Za-z0-9]{0,9} ?/?)?$")
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")  # zero-width characters the model ends lines with


def _plain(text: str) -> str:
    return _INVISIBLE.sub("", _TAG.sub("", text))


def clean_answer(raw: str) -> str:
    """The answer up to where the model starts a new block (a new scene, text or answer label), without
    HTML-like tags and zero-width characters."""
    return _plain(raw[: _cut(raw)]).strip()


def settled_answer(raw: str) -> str:
    """The part of a still-growing answer that later tokens cannot change: a prefix of
    ``clean_answer`` of any continuation of ``raw``. Held back: an incomplete UTF-8 character (``\ufffd``),
    a tail that may be the start of a stop or of a tag, and trailing whitespace."""
    raw = raw.rstrip("\ufffd")
    cut = _cut(raw)
    for stop in STOPS:
        for k in range(len(stop) - 1, 0, -1):
            if k <= cut and raw[:cut].endswith(stop[:k]):
                cut = min(cut, len(raw[:cut]) - k)
                break
    text = _plain(raw[:cut])
    tag = _TAG_START.search(text)
    if tag:
        text = text[: tag.start()]
    return text.strip()
