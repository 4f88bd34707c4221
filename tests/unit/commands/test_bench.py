"""`scenestream bench …`: --json prints the report as one JSON document, without it a rendering of the main
figures. The measurements are replaced by small reports shaped like the ops modules' own."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scenestream.cli import app

TIMING = {"requests": 64, "batch": 16, "generated_tokens": 5120, "wall_s": 12.5, "ttft_p50_ms": 41.5}
REPORTS = {
    "transport": (
        "bench_transport",
        "run_bench",
        {
            "benchmark": "transport",
            "hops": 3,
            "messages": 20000,
            "offered_rate_msgs_per_s": 1000.0,
            "rounds": 3,
            "raw": {
                "throughput_msgs_per_s": 41000.0,
                "hop_p50_ms": 1.2,
                "hop_p99_ms": 3.4,
                "e2e_p50_ms": 3.9,
                "e2e_p99_ms": 8.1,
            },
            "backbone": {
                "throughput_msgs_per_s": 38000.0,
                "hop_p50_ms": 1.4,
                "hop_p99_ms": 4.2,
                "e2e_p50_ms": 4.4,
                "e2e_p99_ms": 9.3,
            },
            "throughput_ratio": 0.927,
            "targets": {"throughput_ratio_min": 0.5, "hop_p99_ms_max": 20},
        },
        ["0.927", "38000"],
    ),
    "scene": (
        "bench_scene",
        "run_bench",
        {
            "benchmark": "scene",
            "held_out_single": 240,
            "held_out_mixed": 24,
            "paraphrase_pairs": 40,
            "e5": {
                "held_out": {"accuracy": 0.975, "macro_f1": 0.9749, "confusion": {"matrix": [[1, 0], [0, 1]]}},
                "held_out_ru": {"accuracy": 0.983},
                "held_out_en": {"accuracy": 0.967},
                "mixed": {"second_active": 0.75},
                "delta_agreement": {
                    "ru": {"same_delta_code": 0.9},
                    "en": {"same_delta_code": 0.85},
                    "en-ru": {"same_delta_code": 0.6},
                },
                "texts_per_s": 612.3,
            },
            "zero_shot_e5_labels": {"accuracy": 0.5, "macro_f1": 0.45},
        },
        ["0.975", "612.3"],
    ),
    "decoder": (
        "bench_decoder",
        "run_decoder_bench",
        {
            "benchmark": "decoder",
            "scenes": 64,
            "max_new_tokens": 80,
            "adapters": ["body", "logician"],
            "a_transformers_single": {**TIMING, "batch": 1, "tokens_per_s": 35.2},
            "b_transformers_batched_peft": {**TIMING, "tokens_per_s": 180.4, "lora_kernel": "peft"},
            "b_transformers_batched": {**TIMING, "tokens_per_s": 402.7, "lora_kernel": "stacked"},
            "c_vllm": {"skipped": "vLLM is not installed in this environment"},
            "ratio_b_over_a": 11.44,
            "ratio_b_peft_over_a": 5.12,
            "targets": {"vllm_over_single_min": 10},
        },
        ["35.2", "402.7", "11.44", "vLLM is not installed"],
    ),
    "quality": (
        "bench_decoder",
        "run_quality",
        {
            "benchmark": "quality",
            "eval_set": "data/eval/prompts.jsonl",
            "engine": "vllm",
            "adapters": ["poet"],
            "judge": {"held_out_accuracy": 0.892},
            "per_register": {
                "poet": {
                    side: {
                        lang: {
                            "n": 120,
                            "judge_fidelity": judge,
                            "finished": 0.975,
                            "language_match": 1.0,
                            "invented_sources": invented,
                            "loop_rate": 0.008,
                            "tokens_mean": 61.5,
                            "relevance": relevance,
                            "router_fidelity": 0.95,
                        }
                        for lang in ("all", "ru", "en")
                    }
                    for side, judge, invented, relevance in (("adapter", 0.917, 0, 0.861), ("base", 0.083, 3, 0.874))
                }
                | {"heldout_loss": {"adapter": 3.24, "base": 3.75, "test_examples": 40}},
            },
            "targets": {"missed": ["poet ru relevance: 0.861 (target ≥ base 0.874; base 0.874)"], "all_met": False},
        },
        ["poet", "0.917", "0.083", "0.861", "0.874", "3.24", "3.75", "0.892", "targets missed (1)"],
    ),
    "memory": (
        "bench_memory",
        "run_bench",
        {
            "benchmark": "memory",
            "backend": "qdrant-edge (on disk)",
            "targets": {"scenes_per_s_min": 500, "recall_p99_ms_max_at_100k": 20, "recall_at_5_min": 0.9},
            "archive": [
                {
                    "scenes": 10000,
                    "store_scenes_per_s": 21000.4,
                    "recall_per_s": 1500.2,
                    "recall_p50_ms": 0.61,
                    "recall_p99_ms": 1.234,
                }
            ],
            "paraphrases": {
                "pairs": 60,
                "distractors": 900,
                "recall_at_5": 0.9667,
                "by_lang": {"ru": 0.95, "en": 0.98},
            },
            "stage_scenes_per_s": 812.5,
        },
        ["10,000", "21000", "1.234", "0.967", "812.5"],
    ),
    "e2e": (
        "bench_decoder",
        "run_e2e_bench",
        {
            "benchmark": "e2e",
            "engine": "vllm",
            "max_new_tokens": 80,
            "stream_interval_ms": 100,
            "decoder_max_inflight": 16,
            "modes": {
                mode: {
                    "mode": mode,
                    "runs": [
                        {
                            "rate_rps": 4.0,
                            "requests": 80,
                            "streamed_answers": 80,
                            "partials_per_answer_p50": 6,
                            "first_token_p50_ms": first,
                            "first_token_p99_ms": 402.9,
                            "answer_p50_ms": 1203.0,
                            "answer_p99_ms": 2511.0,
                            "tokens_per_s": 187.5,
                            "rss_mb": 2345.0,
                        }
                    ],
                    **extra,
                }
                for mode, first, extra in (
                    (
                        "continuous",
                        151.2,
                        {
                            "ask_through_running_stack": {
                                "in_process": {
                                    "calls": 3,
                                    "ask_p50_ms": 900.0,
                                    "generate_p50_ms": 800.0,
                                    "ask_over_generate": 1.12,
                                }
                            },
                            "overload": {
                                "rate_rps": 4.0,
                                "seconds": 120.0,
                                "rss_mb_first": 2301.0,
                                "rss_mb_max": 2399.0,
                                "rss_mb_last": 2377.0,
                            },
                        },
                    ),
                    ("batch", 3802.0, {}),
                )
            },
            "ratios": [
                {
                    "rate_rps": 4.0,
                    "first_token_p50_batch_over_continuous": 25.14,
                    "first_token_p99_batch_over_continuous": 9.0,
                    "answer_p50_batch_over_continuous": 1.0,
                }
            ],
        },
        ["vllm", "151", "3802", "2511", "1.12", "25.14", "2399", "187.5"],
    ),
    "inflight": (
        "bench_continuous",
        "run_inflight_bench",
        {
            "benchmark": "inflight",
            "engine": "vllm",
            "scenes": 64,
            "max_new_tokens": 80,
            "batch": {"tokens_per_s": 226.4, "ttft_p50_ms": 4200.0},
            "continuous": [
                {
                    "in_flight": 16,
                    "tokens_per_s": 201.5,
                    "share_of_batch_tokens_per_s": 0.89,
                    "ttft_p50_ms": 310.0,
                    "ttft_p99_ms": 900.0,
                    "answer_p50_ms": 5100.0,
                    "answer_p99_ms": 7700.0,
                }
            ],
            "suggested_in_flight": 16,
            "median_share_of_batch": 0.89,
        },
        ["226.4", "201.5", "0.89", "310", "suggested SCENESTREAM_DECODER_MAX_INFLIGHT: 16"],
    ),
    "lora": (
        "bench_lora",
        "run_lora_bench",
        {
            "benchmark": "lora",
            "prompts": 16,
            "new_tokens": 40,
            "repeats": 3,
            "batch": ["poet"],
            "device": "cpu",
            "threads": 16,
            "compiled_decode": {"peft": False, "stacked": False},
            "kernels": {
                "peft": {
                    "tokens_per_s_median": 120.5,
                    "warmup_s": 3.2,
                    "runs": [],
                    "answers_identical_to_peft": "16/16",
                },
                "stacked": {
                    "tokens_per_s_median": 301.0,
                    "warmup_s": 2.1,
                    "runs": [],
                    "answers_identical_to_peft": "15/16",
                    "float32_answers_identical_to_peft": "16/16",
                },
            },
            "speedup_stacked_over_peft": 2.5,
            "example": {"adapter": "poet", "answer": "a [bracketed] answer"},
        },
        ["120.5", "301.0", "2.50", "15/16", "[bracketed]"],
    ),
    "gpu": (
        "bench_gpu",
        "run_gpu_bench",
        {
            "benchmark": "gpu",
            "device": "NVIDIA H200",
            "sizes": {"batch": 256, "new_tokens": 64},
            "model": {"config": "built-in copy", "layers": 18},
            "a_peft_single": {"tokens_per_s": 61.5},
            "b_stacked_mixed_eager": {"error": "out of memory"},
            "ratios": {},
            "targets": {},
            "errors": [],
        },
        ["61.5 tok/s", "out of memory"],
    ),
}


@pytest.fixture
def canned(monkeypatch):
    def use(bench: str) -> tuple[dict, list[str]]:
        module, function, report, figures = REPORTS[bench]
        monkeypatch.setattr(f"scenestream.ops.{module}.{function}", lambda *args, **kwargs: report)
        return report, figures

    return use


@pytest.mark.parametrize("bench", sorted(REPORTS))
def test_json_prints_the_report_as_one_document(canned, bench):
    report, _figures = canned(bench)
    result = CliRunner().invoke(app, ["bench", bench, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == report


@pytest.mark.parametrize("bench", sorted(REPORTS))
def test_human_rendering_shows_the_main_figures(canned, bench):
    _report, figures = canned(bench)
    result = CliRunner().invoke(app, ["bench", bench])
    assert result.exit_code == 0, result.output
    for figure in figures:
        assert figure in result.stdout, (figure, result.stdout)
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_renderings_of_partial_reports():
    """A decoder run without (b') and vLLM, and lora runs whose answers were not analysed, render too."""
    from scenestream.commands.bench import render_decoder, render_lora
    from scenestream.commands.common import as_text

    decoder = {
        key: value
        for key, value in REPORTS["decoder"][2].items()
        if key not in ("b_transformers_batched_peft", "c_vllm", "targets")
    }
    assert "402.7" in as_text(render_decoder(decoder)) and "vLLM" not in as_text(render_decoder(decoder))
    lora = {**REPORTS["lora"][2], "answers_analysis": "skipped: compiled engines pad their batches"}
    lora["kernels"] = {"stacked": {"tokens_per_s_median": 99.0, "warmup_s": 1.0, "runs": []}}
    assert "skipped: compiled" in as_text(render_lora(lora)) and "99.0" in as_text(render_lora(lora))


def test_kernels_and_embedders_come_from_the_settings_declaration(canned):
    canned("lora")
    canned("scene")
    for args in (
        ["bench", "lora", "--kernels", "peft,nope"],
        ["bench", "lora", "--kernels", ","],
        ["bench", "scene", "--embedders", "e5,bert"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "Invalid value" in result.output, args
    assert CliRunner().invoke(app, ["bench", "lora", "--kernels", "bgmv,stacked", "--json"]).exit_code == 0


def test_e2e_and_inflight_refuse_what_they_cannot_measure():
    for args in (["e2e", "--modes", "turbo"], ["inflight", "--caps", "0,8"], ["inflight", "--caps", "x"]):
        result = CliRunner().invoke(app, ["bench", *args])
        assert result.exit_code == 2, (args, result.output)
