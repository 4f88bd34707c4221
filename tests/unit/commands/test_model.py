"""`scenestream setup`, `train`, `sample-answers`: one JSON document with --json, a short rendering without."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from scenestream.cli import app
from scenestream.commands.common import as_text
from scenestream.commands.model import render_sampling, render_train


def test_setup_with_a_base_model_of_ones_own(monkeypatch, tmp_path):
    from scenestream.settings import get_settings

    monkeypatch.setenv("SCENESTREAM_BASE_MODEL", str(tmp_path))
    get_settings.cache_clear()
    try:
        doc = json.loads(CliRunner().invoke(app, ["setup", "--json"]).stdout)
        human = CliRunner().invoke(app, ["setup"]).stdout
    finally:
        get_settings.cache_clear()
    assert doc == {"base_model": str(tmp_path), "prepared_now": False, "terms": None}
    assert human.strip() == f"SCENESTREAM_BASE_MODEL={tmp_path}: nothing to prepare"


def test_train_and_sampling_renderings():
    result = {
        "register": "logician",
        "steps": 86,
        "epochs": 2.0,
        "lr": 3e-4,
        "router_agreed": True,
        "train_examples_available": 340,
        "sampled_examples": 400,
        "sampled_from": "logician.jsonl",
        "sampled_spread": True,
        "train_examples": 620,
        "test_examples": 40,
        "heldout_loss_adapter": 3.0812,
        "heldout_loss_base": 3.2633,
        "final_train_loss": 2.5,
    }
    shown = as_text(render_train(result))
    for figure in ("adapter logician", "3.0812", "3.2633", "86 (2.0, 0.0003)", "620 (340)", "400 from logician.jsonl"):
        assert figure in shown, figure
    report = {
        "register": "poet",
        "engine": "vllm",
        "out": "data/decoder/sampled/poet.jsonl",
        "texts": 10,
        "sampled": 20,
        "kept": 7,
        "refused": {"language": 3, "router": 10, "loops": 0},
        "temperature": 0.8,
        "min_weight": 0.5,
    }
    shown = render_sampling(report)
    assert "kept 7 of 20 answers sampled for 10 texts → data/decoder/sampled/poet.jsonl" in shown
    assert "refused: language 3, router 10  (" in shown


def test_max_sampled_needs_with_sampled():
    result = CliRunner().invoke(app, ["train", "--register", "poet", "--max-sampled", "3"])
    assert result.exit_code == 2 and "--with-sampled" in result.output
