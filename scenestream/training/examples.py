"""A register's examples for training: the corpus rows, their prompts, and what the router reads in them.

    load_examples("poet", "train")          # rows of the register's decoder examples (data/decoder/poet.jsonl)
    prompts_for(rows, "poet")               # (prompt, answer): each text's scene as the stack builds it

Prompts come from :func:`scenestream.offline.scenes_for`, the one offline scene
path, so an adapter is trained on exactly the prompts the running stack builds
(with the same ``SCENESTREAM_TOKENIZER_MODEL`` and ``SCENESTREAM_SCENE_EMBEDDER``).
"""

from __future__ import annotations

from typing import Optional

from scenestream.schemas.codec import read_jsonl
from scenestream.settings import Settings


def load_examples(register: str, split: str) -> list[dict]:
    """The rows of ``split`` in the decoder example files the register's catalogue entry names."""
    from scenestream.schemas.registers import catalogue

    paths = catalogue()[register].decoder_examples
    if not paths:
        raise FileNotFoundError(f"register {register!r} names no decoder examples in {catalogue()[register].source}")
    rows = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"no training data for register {register!r}: {path}")
        rows += read_jsonl(path)
    return [row for row in rows if row["split"] == split]


def prompts_for(rows: list[dict], register: str, settings: Optional[Settings] = None) -> list[tuple[str, str]]:
    """(prompt, answer) pairs: each text's scene as the running stack builds it (:func:`scenes_for`), the
    register the adapter's."""
    from scenestream.agents.decoder.prompt import build_prompt
    from scenestream.offline import scenes_for
    from scenestream.schemas.records import RawText

    scenes = scenes_for([RawText(message_id=row["id"], session_id="train", text=row["text"]) for row in rows], settings)
    return [(build_prompt(scene, register), row["answer"]) for scene, row in zip(scenes, rows)]


def router_reading(texts: list[str], settings: Optional[Settings] = None) -> tuple[list[str], list[dict[str, float]]]:
    """The register the scene builder's router gives each text (an answer, here), and its weights."""
    from scenestream.offline import scenes_for
    from scenestream.schemas.records import RawText

    scenes = scenes_for(
        [RawText(message_id=f"r{i}", session_id="router", text=t if t.strip() else "…") for i, t in enumerate(texts)],
        settings,
    )
    return [s.register for s in scenes], [{w.name: w.weight for w in s.registers} for s in scenes]


def router_agreed(rows: list[dict], register: str) -> list[dict]:
    """The rows whose *answer* the scene builder's register router assigns to ``register``: the answers
    that speak most plainly in the register's voice (the router also reacts to topic: a logician's
    answer about sleep can read as body). Style fidelity is measured with the same router, on answers
    to held-out texts that no training choice ever sees."""
    reads, _weights = router_reading([row["answer"] for row in rows])
    return [row for row, read in zip(rows, reads) if read == register]
