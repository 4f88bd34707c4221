"""Adapter training end to end on the real base model: sampled answers, a short run, its held-out loss."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scenestream.schemas.records import REGISTERS
from scenestream.settings import Settings
from scenestream.training.provision import provision

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base_model():
    return provision(Settings(), progress=False)


def test_sample_answers_writes_only_kept_train_rows(base_model, tmp_path, monkeypatch):
    from scenestream.cli import app
    from scenestream.settings import get_settings

    monkeypatch.setenv("SCENESTREAM_ENGINE", "transformers")
    get_settings.cache_clear()
    out = tmp_path / "logician.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "sample-answers",
            "--json",
            "--register",
            "logician",
            "--limit",
            "3",
            "--per-text",
            "1",
            "--max-new-tokens",
            "40",
            "--min-weight",
            "0",
            "--out",
            str(out),
        ],
    )
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["engine"] == "transformers" and report["texts"] == 3 and report["sampled"] == 3
    assert report["kept"] + sum(report["refused"].values()) == 3
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == report["kept"]
    assert all(r["split"] == "train" and r["source"] == "sampled" and r["answer"] for r in rows)
    assert all(r["topic"] in REGISTERS for r in rows)  # what the router reads each text as


def test_a_short_training_run_with_sampled_rows_and_its_heldout_loss(base_model, tmp_path):
    from scenestream.training.examples import load_examples
    from scenestream.training.train import TrainConfig, heldout_losses, train

    sampled = tmp_path / "sampled.jsonl"
    rows = [
        {**row, "id": f"logician-sampled-{i + 1:04d}", "source": "sampled"}
        for i, row in enumerate(load_examples("logician", "train")[10:12])
    ]
    sampled.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = TrainConfig(
        register="logician", out=tmp_path / "adapters", epochs=1, batch_size=4, limit=2, sampled=sampled, save_every=1
    )
    result = train(cfg, base_model, progress=False)
    assert result["steps"] == 1 and result["sampled_examples"] == 2 and result["train_examples"] == 4
    saved = tmp_path / "adapters" / "logician"
    assert json.loads((saved / "scenestream-train.json").read_text()) == result
    assert (tmp_path / "adapters" / ".checkpoints" / "logician" / "trainer.pt").exists()
    again = heldout_losses(base_model, saved, "logician", limit=2)
    assert again["test_examples"] == 2 and again["heldout_loss_base"] == pytest.approx(result["heldout_loss_base"])
    # the saved adapter is bf16 (training kept float32 LoRA weights): the same loss within rounding
    assert again["heldout_loss_adapter"] == pytest.approx(result["heldout_loss_adapter"], abs=0.02)


def test_sampled_rows_of_another_register_are_refused(base_model, tmp_path):
    from scenestream.training.train import TrainConfig, train

    sampled = tmp_path / "sampled.jsonl"
    sampled.write_text(
        json.dumps({"id": "poet-sampled-0001", "text": "x", "lang": "en", "answer": "y", "split": "train"}) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="not sampled logician train rows"):
        train(TrainConfig(register="logician", out=tmp_path, limit=2, sampled=sampled), base_model, progress=False)
