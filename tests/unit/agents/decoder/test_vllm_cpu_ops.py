"""scenestream's CPU ops for vLLM give what vLLM's own CPU ops give: the LoRA products for every op and
index pattern, the repetition penalty for every mix of prompt, output and padding."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
vllm_ops = pytest.importorskip("vllm.lora.ops.torch_ops")

from vllm.model_executor.layers.utils import apply_penalties as vllm_apply_penalties  # noqa: E402

from scenestream.agents.decoder import vllm_cpu_ops as grouped  # noqa: E402

SLOTS, RANK, HIDDEN, OUT = 4, 8, 64, 96


def indices(tokens: int, pattern: str):
    if pattern == "one":
        return torch.full((tokens,), 2, dtype=torch.long)
    return torch.randint(0, SLOTS, (tokens,), generator=torch.Generator().manual_seed(tokens))


@pytest.mark.parametrize("pattern", ["one", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bgmv_ops_match_vllm(pattern, dtype):
    g = torch.Generator().manual_seed(1)
    tokens = 37
    idx = indices(tokens, pattern)
    x = torch.randn(tokens, HIDDEN, generator=g).to(dtype)
    a = torch.randn(SLOTS, 1, RANK, HIDDEN, generator=g).to(dtype)
    b = torch.randn(SLOTS, 1, OUT, RANK, generator=g).to(dtype)
    tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 0.25, "rtol": 0.02}

    shrunk = [torch.zeros(tokens, RANK, dtype=torch.float32) for _ in range(2)]
    vllm_ops.bgmv_shrink(x, a, shrunk[0], idx, 0.5)
    grouped.bgmv_shrink(x, a, shrunk[1], idx, 0.5)
    torch.testing.assert_close(shrunk[1], shrunk[0], **tol)

    h = shrunk[0].to(dtype)
    base = torch.randn(tokens, OUT, generator=g).to(dtype)
    for add in (True, False):
        outs = [base.clone(), base.clone()]
        vllm_ops.bgmv_expand(h, b, outs[0], idx, add)
        grouped.bgmv_expand(h, b, outs[1], idx, add)
        torch.testing.assert_close(outs[1], outs[0], **tol)
        wide = [torch.zeros(tokens, OUT * 2, dtype=dtype) for _ in range(2)]
        vllm_ops.bgmv_expand_slice(h, b, wide[0], idx, OUT, OUT, add)
        grouped.bgmv_expand_slice(h, b, wide[1], idx, OUT, OUT, add)
        torch.testing.assert_close(wide[1], wide[0], **tol)


def test_sgmv_ops_explode_per_sequence_indices():
    g = torch.Generator().manual_seed(2)
    seq_lens = torch.tensor([5, 1, 7])
    lora = torch.tensor([0, 2, 3])
    tokens = int(seq_lens.sum())
    starts = torch.cumsum(seq_lens, 0) - seq_lens
    x = torch.randn(tokens, HIDDEN, generator=g)
    a = torch.randn(SLOTS, 1, RANK, HIDDEN, generator=g)
    b = torch.randn(SLOTS, 1, OUT, RANK, generator=g)
    meta = (starts, seq_lens, lora, 3, 7, tokens)
    shrunk = [torch.zeros(tokens, RANK) for _ in range(2)]
    vllm_ops.sgmv_shrink(x, a, shrunk[0], *meta, 2.0)
    grouped.sgmv_shrink(x, a, shrunk[1], *meta, 2.0)
    torch.testing.assert_close(shrunk[1], shrunk[0])
    outs = [torch.ones(tokens, OUT) for _ in range(2)]
    vllm_ops.sgmv_expand(shrunk[0], b, outs[0], *meta, True)
    grouped.sgmv_expand(shrunk[0], b, outs[1], *meta, True)
    torch.testing.assert_close(outs[1], outs[0])
    wide = [torch.zeros(tokens, OUT + 8) for _ in range(2)]
    vllm_ops.sgmv_expand_slice(shrunk[0], b, wide[0], *meta, 8, OUT, False)
    grouped.sgmv_expand_slice(shrunk[0], b, wide[1], *meta, 8, OUT, False)
    torch.testing.assert_close(wide[1], wide[0])


def keep_vllm_ops(monkeypatch):
    """vLLM's own ops in its modules for the test (an engine started earlier in this process may have
    installed scenestream's: vLLM runs its plugins in the calling process too); restored after it."""
    from vllm.lora.punica_wrapper import punica_cpu
    from vllm.v1.sample.ops import penalties

    for name in grouped.LORA_OPS:
        monkeypatch.setattr(punica_cpu, name, getattr(vllm_ops, name))
    monkeypatch.setattr(penalties, "apply_penalties", vllm_apply_penalties)
    return punica_cpu, penalties


def test_install_points_vllm_at_the_ops(monkeypatch):
    punica_cpu, penalties = keep_vllm_ops(monkeypatch)
    grouped.install()
    assert all(getattr(punica_cpu, name) is getattr(grouped, name) for name in grouped.LORA_OPS)
    assert penalties.apply_penalties is grouped.apply_penalties


def penalty_case(seed: int, vocab: int = 50, seqs: int = 6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(seqs, vocab, generator=g) * 3
    prompt = torch.randint(0, vocab, (seqs, 9), generator=g)
    prompt[1, 4:] = vocab  # padding
    prompt[2, 1:] = prompt[2, 0]  # one token, many times
    output = torch.randint(0, vocab, (seqs, 5), generator=g)
    output[0] = vocab  # nothing generated yet
    output[3, 2:] = vocab
    output[4, :] = prompt[4, :5]  # repeats the prompt
    return logits, prompt, output, torch.rand(seqs, generator=g) + 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repetition_penalty_matches_vllm(seed):
    logits, prompt, output, repetition = penalty_case(seed)
    zeros = torch.zeros(logits.shape[0])
    expected = vllm_apply_penalties(logits.clone(), prompt, output, zeros, zeros, repetition)
    got = grouped.apply_penalties(logits.clone(), prompt, output, zeros, zeros, repetition)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert not torch.equal(got, logits)


def test_presence_and_frequency_penalties_go_through_vllm():
    logits, prompt, output, repetition = penalty_case(5)
    presence, frequency = torch.full((6,), 0.5), torch.zeros(6)
    frequency[2] = 0.3
    expected = vllm_apply_penalties(logits.clone(), prompt, output, presence, frequency, repetition)
    got = grouped.apply_penalties(logits.clone(), prompt, output, presence, frequency, repetition)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_plugin_is_declared_for_vllm_and_follows_the_setting(monkeypatch):
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert declared.get("scenestream_cpu_ops") == "scenestream.agents.decoder.vllm_cpu_ops:register"
    punica_cpu, penalties = keep_vllm_ops(monkeypatch)
    monkeypatch.setenv("SCENESTREAM_VLLM_CPU_OPS", "false")
    grouped.register()
    assert punica_cpu.bgmv_shrink is not grouped.bgmv_shrink
    assert penalties.apply_penalties is not grouped.apply_penalties
    monkeypatch.setenv("SCENESTREAM_VLLM_CPU_OPS", "true")
    grouped.register()  # this machine's vLLM is the CPU build
    assert punica_cpu.bgmv_shrink is grouped.bgmv_shrink
    assert penalties.apply_penalties is grouped.apply_penalties


def test_no_adapter_adds_nothing():
    """-1 is "no adapter" (vLLM's own CPU ops would apply the last slot's adapter to such a token)."""
    g = torch.Generator().manual_seed(3)
    idx = torch.tensor([-1, 1, -1, 0])
    x = torch.randn(4, HIDDEN, generator=g)
    a = torch.randn(SLOTS, 1, RANK, HIDDEN, generator=g)
    b = torch.randn(SLOTS, 1, OUT, RANK, generator=g)
    shrunk = torch.full((4, RANK), 7.0)
    grouped.bgmv_shrink(x, a, shrunk, idx, 1.0)
    assert torch.equal(shrunk[[0, 2]], torch.zeros(2, RANK))
    torch.testing.assert_close(shrunk[1], a[1, 0] @ x[1])
    base = torch.randn(4, OUT, generator=g)
    out = base.clone()
    grouped.bgmv_expand(shrunk, b, out, idx, True)
    assert torch.equal(out[[0, 2]], base[[0, 2]])
    torch.testing.assert_close(out[3], base[3] + b[0, 0] @ shrunk[3])
