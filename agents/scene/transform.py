"""tokens → scene, as a pure function of a batch (no Kafka, no LLM).

    from scenestream.agents.scene.transform import SceneBuilder
    SceneBuilder().build([tokens])          # one Scene per Tokens record

The texts of a batch are embedded together (one engine call), then each
scene gets: registers from the shipped logistic head, the Δ-code from the
nearest prototype of the shipped codebook, the linkage from the concept
lexicon (embedding similarity, grounded by the text's own hypertokens), and
the field from :mod:`field`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from scenestream.agents.scene.embedder import MODEL_DIR, Embedder, make_embedder
from scenestream.agents.scene.field import field_of
from scenestream.schemas.records import RegisterWeight, Scene, SceneField, Tokens
from scenestream.schemas.registers import catalogue
from scenestream.settings import Settings

BUILDER = "scene-builder-1"
LINKAGE_SIZE = 3
ACTIVE_WEIGHT = 0.2  # a register at or above this weight is "active" (several can be)


@dataclass
class SceneModel:
    """The shipped arrays of one embedder (built by ``ops/build_scene_model.py``)."""

    embedder: str
    head_w: np.ndarray
    head_b: np.ndarray
    codebook: np.ndarray
    concepts_ru: np.ndarray
    concepts_en: np.ndarray
    concepts: list[dict]
    version: str
    registers: tuple[str, ...]  # the head's classes, in its order

    @classmethod
    def load(cls, embedder: str, folder: Optional[Path] = None) -> SceneModel:
        """The arrays of ``embedder`` in ``folder`` (default: the shipped model)."""
        folder = folder or MODEL_DIR
        path = folder / f"scene-{embedder}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: build it with `python -m scenestream.ops.build_scene_model`")
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        registers = tuple(manifest["registers"])
        data = np.load(path)
        digest = manifest["embedders"][embedder]["sha256"][:8]
        return cls(
            embedder,
            data["head_w"],
            data["head_b"],
            data["codebook"],
            data["concepts_ru"],
            data["concepts_en"],
            manifest["concepts"],
            f"{BUILDER}+{embedder}.{digest}",
            registers,
        )


def head_dir(settings: Settings) -> Path:
    """Where ``scenestream register add`` writes a refitted router head (with the codebook and concepts)."""
    return Path(settings.data_dir) / "scene-model"


def model_folder(settings: Settings) -> Path:
    """The scene model the builder loads: a refitted one in the data folder when there is one, else the shipped."""
    refitted = head_dir(settings)
    return refitted if (refitted / "manifest.json").exists() else MODEL_DIR


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def routable(probs: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """``probs`` over the head's classes ``names`` with the classes the register catalogue no longer holds set
    to 0 and the rest renormalised: a removed register is never routed to, without refitting the head."""
    known = np.array([name in catalogue() for name in names])
    if known.all():
        return probs
    if not known.any():
        raise ValueError(
            f"none of the scene head's registers ({', '.join(names)}) is in the catalogue "
            f"({', '.join(catalogue().names)}): refit the head"
        )
    kept = probs * known
    return kept / kept.sum(axis=1, keepdims=True)


def register_weights(probs: np.ndarray, names: tuple[str, ...]) -> list[RegisterWeight]:
    """Ranked weights rounded to 4 places that still sum to exactly 1."""
    order = np.argsort(-probs, kind="stable")
    rounded = [round(float(probs[i]), 4) for i in order]
    rounded[0] = round(1.0 - sum(rounded[1:]), 4)
    known = catalogue()
    return [RegisterWeight(name=names[i], weight=w) for i, w in zip(order, rounded) if names[i] in known]


def scene_id_for(message_id: str, version: str) -> str:
    return hashlib.sha256(f"{message_id}|{version}".encode()).hexdigest()[:20]


@dataclass
class SceneBuilder:
    embedder_name: str = "e5"
    embedder: Embedder | None = None
    timings: dict = field(default_factory=dict)

    folder: Optional[Path] = None  # the scene model's folder; None: the shipped one

    @classmethod
    def from_settings(cls, settings) -> SceneBuilder:
        """The builder the scene stage runs for ``settings`` (SCENESTREAM_SCENE_EMBEDDER; a refitted router head
        in SCENESTREAM_DATA_DIR/scene-model when ``scenestream register add`` made one)."""
        return cls(embedder_name=settings.scene_embedder, folder=model_folder(settings))

    @cached_property
    def model(self) -> SceneModel:
        return SceneModel.load(self.embedder_name, self.folder)

    def reload(self, folder: Path) -> bool:
        """Load the scene model in ``folder`` when it is not the one in use (a router head refitted while the
        stage runs); True when it changed. The batch being built keeps the model it started with."""
        model = SceneModel.load(self.embedder_name, folder)
        if folder == self.folder and model.version == self.model.version:
            return False
        self.folder = folder
        self.__dict__["model"] = model
        return True

    def __post_init__(self) -> None:
        if self.embedder is None:
            self.embedder = make_embedder(self.embedder_name)

    def warm_up(self) -> None:
        _ = self.model  # load the arrays now
        self.embedder.embed(["warm up"])

    def embed(self, records: Sequence[Tokens]) -> np.ndarray:
        return self.embedder.embed([r.text for r in records], [r.ids for r in records])

    def linkage(self, vector: np.ndarray, tokens: Tokens) -> list[str]:
        model = self.model
        lang = "ru" if tokens.lang == "ru" else "en"
        names = [c[lang] for c in model.concepts]
        scores = (model.concepts_ru if lang == "ru" else model.concepts_en) @ vector
        # concepts the text itself names (same stem) are preferred to pure associations
        stems = {h.text[:5] for h in tokens.hypertokens if len(h.text) >= 4}
        bonus = np.array([0.1 if name[:5] in stems else 0.0 for name in names], dtype=np.float32)
        top = np.argsort(-(scores + bonus), kind="stable")[:LINKAGE_SIZE]
        return [names[i] for i in top]

    def build(self, records: Sequence[Tokens]) -> list[Scene]:
        if not records:
            return []
        started = time.perf_counter()
        model = self.model
        vectors = self.embed(records)
        embedded = time.perf_counter()
        probs = routable(softmax(vectors @ model.head_w.T + model.head_b), model.registers)
        codes = np.argmax(vectors @ model.codebook.T, axis=1)
        per_text_ms = (embedded - started) * 1000 / len(records)
        scenes = []
        for tokens, vector, prob, code in zip(records, vectors, probs, codes):
            t0 = time.perf_counter()
            concepts = self.linkage(vector, tokens)
            registers = register_weights(prob, model.registers)
            scenes.append(
                Scene(
                    scene_id=scene_id_for(tokens.message_id, model.version),
                    message_id=tokens.message_id,
                    session_id=tokens.session_id,
                    tenant=tokens.tenant,
                    stage="formed",
                    text=tokens.text,
                    lang=tokens.lang,
                    hypertokens=tokens.hypertokens,
                    concepts=concepts + [h.text for h in tokens.hypertokens[:3] if h.text not in concepts],
                    linkage="·".join(concepts),
                    delta_code=f"Δ{int(code)}",
                    field=SceneField(**field_of(tokens.text, tokens.lang)),
                    registers=registers,
                    register=registers[0].name,
                    builder_version=model.version,
                    ts_ms=tokens.ts_ms,
                    timings_ms={
                        **tokens.timings_ms,
                        "embed": round(per_text_ms, 3),
                        "scene": round(per_text_ms + (time.perf_counter() - t0) * 1000, 3),
                    },
                    replay_of=tokens.replay_of,
                    force_register=tokens.force_register,
                    params=tokens.params,
                )
            )
        return scenes


def active_registers(scene: Scene, threshold: float = ACTIVE_WEIGHT) -> list[str]:
    """The registers that should answer: every one at or above ``threshold`` (the top one always)."""
    return [r.name for r in scene.registers if r.weight >= threshold] or [scene.register]
