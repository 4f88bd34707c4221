"""Adapter model cards: written from the training record, for every shipped adapter, never PEFT's template."""

import json
import shutil

import pytest

from scenestream.agents.decoder.engines import SHIPPED_ADAPTERS as ADAPTERS_ROOT
from scenestream.training.card import model_card, train_command, write_model_card

pytestmark = pytest.mark.unit

RECORD = {
    "register": "logician",
    "steps": 158,
    "epochs": 2.0,
    "lr": 0.0004,
    "router_agreed": True,
    "train_examples_available": 291,
    "sampled_examples": 400,
    "sampled_from": "logician.jsonl",
    "sampled_spread": True,
    "train_examples": 670,
    "test_examples": 39,
    "heldout_loss_adapter": 3.05,
    "heldout_loss_base": 3.26,
    "final_train_loss": 1.9,
}
CONFIG = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}


def test_the_command_is_the_one_the_record_describes():
    assert train_command(RECORD) == (
        "scenestream train --register logician --epochs 2 --lr 0.0004 --router-agreed --with-sampled --max-sampled 400"
    )
    assert train_command({**RECORD, "sampled_spread": False}).endswith("--surest-sampled")
    # an early record without epochs or lr: the defaults of `scenestream train`
    assert train_command({"register": "body"}) == "scenestream train --register body --epochs 2 --lr 0.0003"


def test_the_card_says_what_training_measured_and_from_which_data():
    card = model_card(RECORD, CONFIG)
    assert "# scenestream `logician` adapter" in card and "More Information Needed" not in card
    assert "| 3.05 | 3.26 | 1.9 | 39 |" in card
    assert "270 of 291" in card and "400 answers sampled" in card and "rank 8, alpha 16" in card


def test_every_shipped_adapter_has_its_card(tmp_path):
    folders = sorted(p for p in ADAPTERS_ROOT.iterdir() if (p / "adapter_config.json").exists())
    assert folders
    for folder in folders:
        shipped = (folder / "README.md").read_text(encoding="utf-8")
        copy = tmp_path / folder.name
        copy.mkdir()
        for name in ("scenestream-train.json", "adapter_config.json"):
            shutil.copy(folder / name, copy / name)
        assert write_model_card(copy).read_text(encoding="utf-8") == shipped, folder.name
        assert json.loads((folder / "scenestream-train.json").read_text())["register"] == folder.name
