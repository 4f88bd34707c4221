"""Adapters for tests that need real LoRA weights other than the shipped ones."""

from __future__ import annotations

import shutil
from pathlib import Path


def adapter_like(source: Path, folder: Path, scale: float) -> Path:
    """A real LoRA adapter in ``folder`` with other weights: ``source``'s, its B matrices scaled by ``scale``."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    weights = load_file(folder / "adapter_model.safetensors")
    save_file({k: v * scale if "lora_B" in k else v for k, v in weights.items()}, folder / "adapter_model.safetensors")
    return folder
