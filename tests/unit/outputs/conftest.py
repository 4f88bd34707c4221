"""Scenes built by hand for the output tests (no scene builder, no model)."""

from __future__ import annotations

import pytest

from scenestream.schemas.records import RegisterWeight, Scene, SceneField


def build_scene(**overrides) -> Scene:
    """A resonated Russian scene; any field can be overridden (``registers`` as ``[(name, weight)]`` pairs)."""
    registers = overrides.pop("registers", [("philosopher", 0.55), ("body", 0.42), ("poet", 0.02), ("logician", 0.01)])
    field = overrides.pop("field", {"valence": -0.35, "arousal": 0.62, "tension": 0.48, "rhythm": "fragmented"})
    values = {
        "scene_id": "sc-1",
        "message_id": "m-1",
        "session_id": "s-1",
        "stage": "resonated",
        "text": "Почему я не чувствую шаг в себе?",
        "lang": "ru",
        "hypertokens": [],
        "concepts": ["дрожь", "тишина", "вход"],
        "linkage": "дрожь·тишина·вход",
        "delta_code": "Δ41",
        "field": SceneField(**field),
        "registers": [RegisterWeight(name=name, weight=weight) for name, weight in registers],
        "register": registers[0][0],
        "resonance": 0.85,
        "echoes": [
            {"scene_id": "sc-0", "score": 0.91, "text": "Я слышу тишину внутри."},
            {"scene_id": "sc-a", "score": 0.74, "text": "Шаг — это вход."},
            {"scene_id": "sc-b", "score": 0.52, "text": "Дрожь проходит."},
        ],
        "symbol": "🫁",
        "ts_ms": 1_700_000_000_000,
    }
    values.update(overrides)
    return Scene(**values)


@pytest.fixture
def make_scene():
    return build_scene
