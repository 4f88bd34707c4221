"""Scenes without a broker, built exactly as the running stack builds them.

    from scenestream.offline import scenes_for
    scenes_for(["Почему я не чувствую шаг в себе?"], settings)    # one formed Scene per text

The one path from text to scene outside Kafka: ``scenestream scene``, adapter
training and sampling, the benchmarks and the tests all use it. It builds the
tokenizer and the scene builder from settings the way the tokenizer and scene
stages do (``Tokenizer.from_settings``, ``SceneBuilder.from_settings``), so
``SCENESTREAM_TOKENIZER_MODEL``, ``SCENESTREAM_SCENE_EMBEDDER`` and the other
stage settings mean the same thing here as in a worker; a test runs the same
texts through the stages over the embedded broker and compares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence, Union

from scenestream.agents.scene.transform import SceneBuilder
from scenestream.agents.tokenizer.transform import Tokenizer
from scenestream.schemas.records import RawText, Scene, Tokens
from scenestream.settings import Settings, get_settings

BATCH = 64  # texts embedded together (one engine call), as a busy scene stage would


def offline_message_id(text: str) -> str:
    """Same text, same message id, same scene_id: offline scenes are deterministic."""
    return "cli-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class ScenePath:
    """The tokenizer and scene builder of the stack for one set of settings."""

    tokenizer: Tokenizer
    builder: SceneBuilder

    def tokenize(self, raw: RawText) -> Tokens:
        """The tokenizer stage's transform; raises ``SchemaError`` for a text the stage dead-letters."""
        return self.tokenizer.tokenize(raw)

    def build(self, tokens: Sequence[Tokens]) -> list[Scene]:
        """The scene stage's transform, in batches of :data:`BATCH`."""
        return [scene for i in range(0, len(tokens), BATCH) for scene in self.builder.build(tokens[i : i + BATCH])]

    def scenes(self, raws: Sequence[RawText]) -> list[Scene]:
        return self.build([self.tokenize(raw) for raw in raws])


@lru_cache(maxsize=8)
def scene_path(settings: Settings) -> ScenePath:
    """The (cached) path for ``settings``: the tokenizer's model and the embedder load once per process."""
    return ScenePath(Tokenizer.from_settings(settings), SceneBuilder.from_settings(settings))


Text = Union[str, RawText]


def scenes_for(
    texts: Sequence[Text],
    settings: Optional[Settings] = None,
    *,
    session_id: str = "offline",
    force_register: Optional[str] = None,
) -> list[Scene]:
    """One formed scene per text, in order. A plain string becomes a :class:`RawText` with a message id
    derived from the text (:func:`offline_message_id`) in ``session_id``; a ``RawText`` is taken as it is.
    Raises ``SchemaError`` for a text the tokenizer stage would dead-letter (empty, too long)."""
    settings = settings or get_settings()
    raws = [
        t
        if isinstance(t, RawText)
        else RawText(
            message_id=offline_message_id(t),
            session_id=session_id,
            text=t,
            source="offline",
            force_register=force_register,
        )
        for t in texts
    ]
    return scene_path(settings).scenes(raws)
