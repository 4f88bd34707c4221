"""Scene → the adapter's input text (pure).

The prompt names what the scene builder found (register, Δ-code, linkage,
field) and, when memory recalled earlier scenes, their echoes; labels are in
the text's language so the base model answers in it.
"""

from __future__ import annotations

from typing import Optional, Sequence

from scenestream.schemas.records import Scene

LABELS = {
    "ru": {"text": "Текст", "answer": "Ответ", "echo": "Отзвук"},
    "en": {"text": "Text", "answer": "Answer", "echo": "Echo"},
}
SYMBOLS = {"poet": "🪶", "logician": "🧮", "body": "🫁", "philosopher": "🦉"}


def labels_for(lang: str) -> dict[str, str]:
    return LABELS["ru" if lang == "ru" else "en"]


def scene_header(scene: Scene, register: str) -> str:
    f = scene.field
    return (f"<scene register={register} {scene.delta_code} linkage={scene.linkage} "
            f"valence={f.valence:+.2f} arousal={f.arousal:.2f} tension={f.tension:.2f} rhythm={f.rhythm}>")


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


def clean_answer(raw: str) -> str:
    """The answer up to where the model starts a new block (a new scene, text or answer label)."""
    stops = ["\n<scene", "<scene", "\nТекст:", "\nText:", "\nОтвет:", "\nAnswer:", "\n\n\n"]
    cut = len(raw)
    for stop in stops:
        at = raw.find(stop)
        if at != -1:
            cut = min(cut, at)
    return raw[:cut].strip()
