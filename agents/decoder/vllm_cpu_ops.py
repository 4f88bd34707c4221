"""Faster CPU ops for vLLM's CPU build, installed by a vLLM general plugin.

Two places where vLLM's CPU build runs PyTorch reference code that does far
more work than the result needs (``bench decoder`` profiled its engine core:
the LoRA products and the sampler's penalties took about half of each step):

* **LoRA products.** vLLM's CPU punica wrapper uses ``vllm.lora.ops.torch_ops``:
  for each token it *copies* its adapter's A or B matrix out of the stacked
  weights (``weights[token_lora_indices]``) and runs a batched matrix-vector
  product (``einsum("bi, boi -> bo")``); a prefill of 64 prompts of ~100
  tokens copies 6,400 matrices per projection and layer. Here each product is
  one matrix product of all tokens against all adapter slots, of which each
  token keeps its own: same operands, same result up to summation order. A
  token without an adapter (index -1) gets nothing added, where vLLM's CPU ops
  index the last slot with it and so apply the last loaded adapter to
  requests that asked for none.
* **Repetition penalty.** The sampler's ``apply_penalties`` counts every
  prompt and output token into two [sequences, vocabulary] int64 tables at each
  step (Gemma's vocabulary has 262,144 entries) to scale the logits of the
  tokens seen. Here only the seen tokens' logits are gathered, scaled and
  written back; presence and frequency penalties, when any request sets them,
  still go through vLLM's own function.

vLLM loads the ``vllm.general_plugins`` entry points (pyproject.toml) in every
process it starts, its engine core included; :func:`register` installs the
ops there when the platform is the CPU and the setting ``vllm_cpu_ops``
(``SCENESTREAM_VLLM_CPU_OPS``, from the environment the engine core inherits)
is on. ``scenestream bench decoder`` measures vLLM with and without them in
the same run.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
LORA_OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice", "sgmv_shrink", "sgmv_expand", "sgmv_expand_slice")


def lora_products(inputs, weights, indices, dtype):
    """Row ``t`` of the result is ``inputs[t] @ weights[indices[t]].T`` in ``dtype`` (what
    ``einsum("bi, boi -> bo", inputs, weights[indices])`` computes), and zeros where ``indices[t]`` is
    -1: "no adapter", as vLLM's GPU kernels read it (``weights[-1]`` would take the last adapter's slot).

    One matrix product against every slot at once, no per-token copies of weights, no Python loop,
    no host synchronisation. Shrink (A: out = rank, small): every token times every slot's A, then
    each row keeps its own slot's part. Expand (B: in = rank, small): each token's input is placed in
    its own slot's block of an otherwise zero row, times all slots' B stacked. The slots are few
    (``max_loras``) and the rank small, so the extra products cost little next to the base layer.
    ``weights`` is [slots, out, in] or [slots, 1, out, in]."""
    w = (weights.squeeze(1) if weights.dim() == 4 else weights).to(dtype)
    slots, out, width = w.shape
    tokens = inputs.shape[0]
    valid = (indices >= 0).to(dtype).unsqueeze(1)
    own = indices.clamp(min=0).view(-1, 1, 1)
    x = inputs.to(dtype)
    if out <= width:
        every = (x @ w.reshape(slots * out, width).t()).view(tokens, slots, out)
        return every.gather(1, own.expand(-1, 1, out)).squeeze(1) * valid
    placed = x.new_zeros(tokens, slots, width)
    placed.scatter_(1, own.expand(-1, 1, width), (x * valid).unsqueeze(1))
    return placed.view(tokens, slots * width) @ w.transpose(1, 2).reshape(slots * width, out)


# The six ops below keep the signatures and the output handling of vllm.lora.ops.torch_ops.lora_ops;
# only the product itself is lora_products.


def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0):
    outputs = lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True):
    outputs = lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    common_len = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common_len] += outputs[:limit, :common_len]
    else:
        output_tensor[:, :common_len] = outputs[:limit, :common_len]


def bgmv_expand_slice(
    inputs,
    lora_b_weights,
    output_tensor,
    lora_indices_tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
):
    outputs = lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs[:]
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs[:]


def _explode(lora_indices_tensor, seq_len_tensor):
    import torch

    return torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)


def sgmv_shrink(
    inputs,
    lora_a_weights,
    output_tensor,
    b_seq_start_loc,
    seq_len_tensor,
    lora_indices_tensor,
    batches,
    max_seq_length,
    token_nums,
    scaling,
):
    bgmv_shrink(inputs, lora_a_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor), scaling)


def sgmv_expand(
    inputs,
    lora_b_weights,
    output_tensor,
    b_seq_start_loc,
    seq_len_tensor,
    lora_indices_tensor,
    batches,
    max_seq_length,
    token_nums,
    add_inputs: bool = False,
):
    bgmv_expand(inputs, lora_b_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor), add_inputs)


def sgmv_expand_slice(
    inputs,
    lora_b_weights,
    output_tensor,
    b_seq_start_loc,
    seq_len_tensor,
    lora_indices_tensor,
    batches,
    max_seq_length,
    token_nums,
    slice_offset,
    slice_size,
    add_inputs: bool = False,
):
    bgmv_expand_slice(
        inputs,
        lora_b_weights,
        output_tensor,
        _explode(lora_indices_tensor, seq_len_tensor),
        slice_offset,
        slice_size,
        add_inputs,
    )


def apply_penalties(
    logits, prompt_tokens_tensor, output_tokens_tensor, presence_penalties, frequency_penalties, repetition_penalties
):
    """vLLM's ``apply_penalties`` (in place, same arguments; rows padded with the vocabulary size), with the
    repetition penalty applied to the seen tokens' logits only. Presence or frequency penalties need
    counts over the vocabulary: then vLLM's own function does it all."""
    import torch

    if bool(presence_penalties.any()) or bool(frequency_penalties.any()):
        return _vllm_apply_penalties(
            logits,
            prompt_tokens_tensor,
            output_tokens_tensor,
            presence_penalties,
            frequency_penalties,
            repetition_penalties,
        )
    vocab = logits.shape[1]
    seen = torch.cat([prompt_tokens_tensor.to(logits.device), output_tokens_tensor.to(logits.device)], dim=1)
    real = seen < vocab
    # a padding slot points at a token its row has seen (or at token 0 with the row's logit left as it
    # is), so writing back is the same value wherever one index appears more than once
    first = torch.where(real.any(1), seen.masked_fill(~real, vocab).min(1).values, 0).unsqueeze(1)
    index = torch.where(real, seen, first)
    values = logits.gather(1, index)
    penalty = repetition_penalties.unsqueeze(1)
    scaled = values * torch.where(values > 0, 1.0 / penalty, penalty)  # vLLM's own formula
    scaled = torch.where(real.any(1, keepdim=True), scaled, values)
    logits.scatter_(1, index, scaled)
    return logits


def _vllm_apply_penalties(*args):
    from vllm.model_executor.layers.utils import apply_penalties as vllm_apply_penalties

    return vllm_apply_penalties(*args)


def install() -> None:
    """Point vLLM's CPU punica wrapper at the LoRA products above and its sampler at the penalties."""
    from vllm.lora.punica_wrapper import punica_cpu
    from vllm.v1.sample.ops import penalties

    for name in LORA_OPS:
        setattr(punica_cpu, name, globals()[name])
    penalties.apply_penalties = apply_penalties


def register() -> None:
    """vLLM general-plugin entry point: runs in every vLLM process, possibly more than once."""
    from scenestream.settings import Settings

    if not Settings().vllm_cpu_ops:  # read now: the engine core inherits it from the engine that spawned it
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    install()
    log.info("scenestream: CPU LoRA products and repetition penalty installed in vLLM (pid %d)", os.getpid())
