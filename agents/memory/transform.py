"""The memory hook, as pure functions over a scene archive (no Kafka).

    memory = Memory(archive, embedder)
    resonated, events = memory.remember(scenes)     # formed scenes in, resonated scenes + memory events out
    events = memory.link(outputs)                   # answers linked to their scenes, both ways

Resonance: every recalled scene whose similarity ``s`` passes the floor adds
``w = (s - floor) / (1 - floor)``, and resonance is ``1 - Π(1 - w)``: 0 when
nothing was recalled, growing with similarity and with repetition. Past
``symbol_at`` the scene is compressed into a symbol (the register's emoji).
Only formed scenes are recalled against and stored; resonated and replayed
scenes never feed back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from scenestream.agents.memory.archive import SceneArchive
from scenestream.schemas.records import LoraOutput, MemoryEvent, Scene
from scenestream.schemas.registers import catalogue

FLOOR = 0.84  # e5-small: unrelated texts sit at 0.70–0.80, the same theme above 0.85


def resonance_of(scores: Sequence[float], floor: float = FLOOR) -> float:
    remaining = 1.0
    for score in scores:
        weight = min(1.0, max(0.0, (score - floor) / (1.0 - floor)))
        remaining *= 1.0 - weight
    return round(1.0 - remaining, 4)


@dataclass
class Memory:
    archive: SceneArchive
    embedder: object  # scenestream.agents.scene.embedder.Embedder
    recall_limit: int = 5
    scope: Literal["session", "tenant"] = "session"
    floor: float = FLOOR
    symbol_at: float = 0.7

    def close(self) -> None:
        """Close the archive (a worker stops; the next one reopens it)."""
        self.archive.close()

    def remember(self, scenes: Sequence[Scene]) -> list[tuple[Scene, list[MemoryEvent]]]:
        """Recall, store, resonate; in input order. Scenes of one batch see the ones before them."""
        if not scenes:
            return []
        vectors = self.embedder.embed([s.text for s in scenes])
        out = []
        for scene, vector in zip(scenes, vectors):
            recalled = [
                r
                for r in self.archive.recall(
                    vector,
                    scene.session_id,
                    scene.tenant,
                    self.recall_limit,
                    scope=self.scope,
                    exclude_scene_id=scene.scene_id,
                )
                if r.score >= self.floor
            ]
            resonance = resonance_of([r.score for r in recalled], self.floor)
            echoes = [
                {
                    "scene_id": r.scene_id,
                    "score": round(r.score, 4),
                    "text": r.payload.get("text", ""),
                    "answer": r.payload.get("answer"),
                    "delta_code": r.payload.get("delta_code"),
                }
                for r in recalled
            ]
            symbol = catalogue().symbols.get(scene.register) if resonance >= self.symbol_at else None
            resonated = scene.model_copy(
                update={
                    "stage": "resonated",
                    "resonance": resonance,
                    "echoes": [{k: v for k, v in e.items() if v is not None} for e in echoes],
                    "symbol": symbol,
                }
            )
            if scene.replay_of is None:  # the archive keeps the scene as memory saw it: resonance, echoes
                self.archive.store([resonated], vector[None, :])
            events = [
                MemoryEvent(
                    message_id=scene.message_id,
                    session_id=scene.session_id,
                    scene_id=scene.scene_id,
                    tenant=scene.tenant,
                    event="recalled",
                    details={
                        "echoes": [{"scene_id": e["scene_id"], "score": e["score"]} for e in echoes],
                        "resonance": resonance,
                        "symbol": symbol,
                    },
                )
            ]
            if scene.replay_of is None:
                events.insert(
                    0,
                    MemoryEvent(
                        message_id=scene.message_id,
                        session_id=scene.session_id,
                        scene_id=scene.scene_id,
                        tenant=scene.tenant,
                        event="stored",
                        details={"delta_code": scene.delta_code, "register": scene.register},
                    ),
                )
            out.append((resonated, events))
        return out

    def link(self, outputs: Sequence[LoraOutput]) -> list[MemoryEvent]:
        """Write each answer into its scene's archive entry (scene → answer; the answer names its scene)."""
        events = []
        for output in outputs:
            if output.replay_of is not None:
                continue  # replays never touch the originals
            stored = self.archive.get(output.scene_id)
            found = stored is not None
            duplicate = found and stored.get("answer_message_id") == output.message_id
            if duplicate:  # answered again after a crash: the first answer stays the one on record
                pass
            elif found:
                self.archive.update_payload(
                    output.scene_id,
                    {
                        "answer": output.text,
                        "answer_register": output.register,
                        "answer_adapter": output.adapter,
                        "answer_adapter_version": output.adapter_version,
                        "answer_engine": output.engine,
                        "answer_ts_ms": output.ts_ms,
                        "answer_timings_ms": output.timings_ms,
                        "answer_message_id": output.message_id,
                    },
                )
            events.append(
                MemoryEvent(
                    message_id=output.message_id,
                    session_id=output.session_id,
                    scene_id=output.scene_id,
                    tenant=output.tenant,
                    event="linked",
                    details={
                        "register": output.register,
                        "adapter": output.adapter,
                        "archived_scene": found,
                        **({"duplicate": True} if duplicate else {}),
                    },
                )
            )
        return events
