"""The transformers engine's fast decode: a static KV cache and a compiled decoding step.

transformers 5 compiles the decoding forward itself when ``generate`` runs with a compileable cache (a
``StaticCache`` passed in, or ``cache_implementation="static"``) on CUDA: it wraps the model's ``__call__``
in ``torch.compile`` with the ``compile_config`` it is given (mode ``reduce-overhead``: the step is replayed
as a CUDA graph) and keeps the prefill eager. This module only decides when to ask for it and with which sizes:

* ``SCENESTREAM_COMPILE=auto`` turns it on with CUDA and off on CPU (inductor on 2 cores compiles for
  minutes and gains little); ``on`` forces it (on CPU too, through ``CompileConfig._compile_all_devices``),
  ``off`` never. PEFT's mixed-adapter batches index rows by adapter, shapes a graph cannot hold: with
  ``SCENESTREAM_LORA_KERNEL=peft`` it stays off, and the reason is logged.
* ``dynamic=True``: traced once with symbolic batch size and cache length (a batch of one is traced
  apart: torch specializes sizes of 1), then a CUDA graph is captured for each new shape. Left at
  ``None``, torch traces every decoding step twice (the sliding-window layers' fill count is a Python
  int that changes each step) and again for each new batch size: minutes of compiling on a GPU.
  The engine still keeps the shapes few, the batch padded to a power of two and the cache sized in
  steps of ``CACHE_STEP`` tokens: each captured graph holds its own memory.
* One ``StaticCache`` per padded batch size, reset and passed to every ``generate``
  (:class:`StaticCaches`). Left to itself, transformers 5 makes a new cache for each call; the CUDA
  graphs hold the cache's addresses, so each call would capture them again, and after
  ``torch._inductor.config.triton.cudagraph_unexpected_rerecord_limit`` (128) captures torch stops using
  CUDA graphs for that step: a server that slows down after its 128th batch.
* ``fullgraph=True``: a graph break is an error, seen at the engine's warm-up, instead of a slow
  half-compiled step nobody notices.
"""

from __future__ import annotations

from typing import Optional

CACHE_STEP = 256
MODES = ("auto", "on", "off")


def compile_decision(setting: str, device: str, lora_kernel: Optional[str]) -> tuple[bool, str]:
    """(compile or not, why) for ``SCENESTREAM_COMPILE`` on ``device``; ``lora_kernel`` is the engine's way of
    mixing adapters, None without adapters."""
    if setting not in MODES:
        raise ValueError(f"SCENESTREAM_COMPILE={setting!r}: one of {', '.join(MODES)}")
    if setting == "off":
        return False, "SCENESTREAM_COMPILE=off"
    if lora_kernel == "peft":
        return False, (
            "PEFT's mixed-adapter batches (SCENESTREAM_LORA_KERNEL=peft) have data-dependent shapes "
            "that cannot be compiled; SCENESTREAM_LORA_KERNEL=stacked can"
        )
    on_cuda = device.startswith("cuda")
    if setting == "auto" and not on_cuda:
        return False, f"SCENESTREAM_COMPILE=auto on {device}: compiling only pays on CUDA"
    return True, f"SCENESTREAM_COMPILE={setting} on {device}"


def compile_config(device: str, backend: str = "inductor", fullgraph: bool = True):
    """transformers' CompileConfig for the decoding step: CUDA graphs through inductor's reduce-overhead.
    Another backend (``eager``: dynamo's tracing only, seconds on CPU, for tests) gets no mode."""
    from transformers import CompileConfig

    config = CompileConfig(
        fullgraph=fullgraph, dynamic=True, backend=backend, mode="reduce-overhead" if backend == "inductor" else None
    )
    if not device.startswith("cuda"):
        config._compile_all_devices = True  # transformers' own switch for compiling on other devices
    return config


def batch_bucket(n: int) -> int:
    """The padded batch size for ``n`` rows: the next power of two (few shapes, few captures)."""
    if n < 1:
        raise ValueError("a batch needs at least one row")
    return 1 << (n - 1).bit_length()


def cache_length(prompt_width: int, max_new_tokens: int) -> int:
    return -(-(prompt_width + max_new_tokens) // CACHE_STEP) * CACHE_STEP


class StaticCaches:
    """The static KV caches of one model, one per batch size, reused across ``generate`` calls."""

    def __init__(self, model, config) -> None:
        self.model = model
        self.config = config  # the CompileConfig
        self.by_batch: dict = {}

    def generate_kwargs(self, batch: int, prompt_width: int, max_new_tokens: int) -> dict:
        """``generate`` keyword arguments of the static-cache, compiled-decode path for this batch."""
        from transformers import StaticCache

        length = cache_length(prompt_width, max_new_tokens)
        held = self.by_batch.get(batch)  # (its length, the cache)
        if held is not None and held[0] >= length:
            cache = held[1]
            cache.reset()  # zeros in place: the same addresses for the captured graphs
        else:  # a longer cache is a new shape anyway (compiled and captured once more)
            cache = StaticCache(config=self.model.config.get_text_config(decoder=True), max_cache_len=length)
            self.by_batch[batch] = (length, cache)
        return {"past_key_values": cache, "compile_config": self.config}
