"""An adapter's model card (``README.md`` beside its weights), written from what training recorded.

PEFT's ``save_pretrained`` leaves a template full of "[More Information Needed]"; scenestream replaces it
with what a user of the adapter needs: which register it speaks, on which base model, from which data, with
which command, and what training measured (``scenestream-train.json``, ``adapter_config.json``)."""

from __future__ import annotations

import json
from pathlib import Path

TRAIN_RECORD = "scenestream-train.json"
DEFAULTS = {"epochs": 2.0, "lr": 3e-4}  # what `scenestream train` used where the record does not say


def train_command(record: dict) -> str:
    """The ``scenestream train`` command line that the record describes."""
    parts = [f"scenestream train --register {record['register']}"]
    parts.append(f"--epochs {record.get('epochs', DEFAULTS['epochs']):g}")
    parts.append(f"--lr {record.get('lr', DEFAULTS['lr']):g}")
    if record.get("router_agreed"):
        parts.append("--router-agreed")
    if record.get("sampled_examples"):
        parts.append(f"--with-sampled --max-sampled {record['sampled_examples']}")
        if record.get("sampled_spread") is False:
            parts.append("--surest-sampled")
    return " ".join(parts)


def model_card(record: dict, config: dict) -> str:
    """The card's Markdown text for an adapter whose training record is ``record`` and PEFT config ``config``."""
    register = record["register"]
    data = f"`data/decoder/{register}.jsonl` (train split"
    if record.get("router_agreed"):
        available = record.get("train_examples_available")
        data += ", only the examples whose answer the scene builder's register router reads as " + register
        data += f": {record['train_examples'] - record.get('sampled_examples', 0)} of {available}" if available else ""
    data += ")"
    if record.get("sampled_examples"):
        data += (
            f" and {record['sampled_examples']} answers sampled from an earlier {register} adapter and kept by the "
            f"router (`data/decoder/sampled/{record.get('sampled_from') or register + '.jsonl'}`)"
        )
    lines = [
        "---",
        "library_name: peft",
        "pipeline_tag: text-generation",
        "base_model: google/gemma-3-270m",
        "tags: [lora, scenestream]",
        "---",
        "",
        f"# scenestream `{register}` adapter",
        "",
        f"A LoRA adapter for Gemma 3 270M that answers a scene in the **{register}** register's voice; scenestream's "
        "decoder stage loads it beside the other registers' adapters on one base model and chooses it per scene "
        "(`agents/decoder/`).",
        "",
        "## Training",
        "",
        f"- Command: `{train_command(record)}` (the repository's README, section on training, says how each "
        "shipped adapter was made).",
        f"- Data: {data}; {record['train_examples']} examples in all. The test split is never trained on.",
        f"- LoRA: rank {config.get('r')}, alpha {config.get('lora_alpha')}, dropout {config.get('lora_dropout')}, on "
        f"{', '.join(sorted(config.get('target_modules') or []))}; {record['steps']} steps; weights in bf16.",
        "",
        "## Measured by training",
        "",
        "| held-out loss, adapter | held-out loss, base model | final train loss | test examples |",
        "|---|---|---|---|",
        f"| {record['heldout_loss_adapter']} | {record['heldout_loss_base']} | {record['final_train_loss']} | "
        f"{record['test_examples']} |",
        "",
        "Answer quality (the style judge, finished answers, invented sources, relevance) is measured on the eval "
        "set by `scenestream bench quality`, never by training; the README's quality table has the latest figures.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder: Path) -> Path:
    """Write ``folder/README.md`` from the adapter's training record and PEFT config there."""
    record = json.loads((folder / TRAIN_RECORD).read_text())
    config = json.loads((folder / "adapter_config.json").read_text())
    card = folder / "README.md"
    card.write_text(model_card(record, config), encoding="utf-8")
    return card
