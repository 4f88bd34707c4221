"""The base model in use, for serving: where it is, and how a prompt becomes token ids.

``SCENESTREAM_BASE_MODEL`` names any local Hugging Face causal-LM folder; unset,
it is Gemma 3 270M as ``scenestream setup`` provisions it
(:mod:`scenestream.training.provision`) under ``$SCENESTREAM_MODELS_DIR``.
Gemma is provided under the Gemma Terms of Use (``GEMMA_TERMS.html`` beside the weights).

The Gemma tokenizer does not add ``<bos>`` on its own; without it the base
model only repeats itself ("is is is …"). :func:`encode_prompt` adds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from scenestream.settings import Settings

DEFAULT_NAME = "gemma-3-270m"
READY = "scenestream-model.json"


def default_model_dir(settings: Settings) -> Path:
    return settings.models_dir / DEFAULT_NAME


def base_model_path(settings: Settings) -> Path:
    """The base model folder in use: SCENESTREAM_BASE_MODEL or the provisioned Gemma."""
    if settings.base_model:
        path = Path(settings.base_model).expanduser()
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"SCENESTREAM_BASE_MODEL={path} is not a Hugging Face model folder (no config.json)"
            )
        return path
    path = default_model_dir(settings)
    if not (path / READY).exists():
        raise FileNotFoundError(f"the base model is not provisioned yet: run `scenestream setup` (expected {path})")
    if not is_ready(settings):
        raise FileNotFoundError(
            f"the base model in {path} has a tokenizer that reads text as single characters: "
            "run `scenestream setup` once more (it rebuilds only the tokenizer)"
        )
    return path


def is_ready(settings: Settings) -> bool:
    """The default base model is provisioned, with the current tokenizer."""
    ready = default_model_dir(settings) / READY
    return ready.exists() and json.loads(ready.read_text()).get("tokenizer") == TOKENIZER_FORMAT


TOKENIZER_FORMAT = "bpe-merges-from-gguf-scores"  # in READY; a folder without it gets its tokenizer rebuilt


def check_tokenizer(tokenizer) -> None:
    """A clear error when the tokenizer cuts words into single characters."""
    text = "Why do people believe in conspiracy theories? Почему я не чувствую шаг в себе?"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > len(text) / 2:
        raise RuntimeError(
            f"the base model's tokenizer splits text into {len(ids)} tokens for {len(text)} "
            "characters (no BPE merges): the model cannot read it; run `scenestream setup` again"
        )


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with exactly one leading ``<bos>``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos: Optional[int] = tokenizer.bos_token_id
    return ids if bos is None or (ids and ids[0] == bos) else [bos, *ids]
