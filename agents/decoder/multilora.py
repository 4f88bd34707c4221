"""Mixed-adapter LoRA for inference with static shapes: every adapter stacked, one slot per batch row.

    from scenestream.agents.decoder.multilora import StackedLoRA

    lora = StackedLoRA.attach(model, {"poet": Path(".../adapters/poet"), ...})  # a plain transformers model
    lora.set_slots(["poet", "base", "body"])  # one name per batch row, before each generate
    model.generate(...)

PEFT's mixed batches (``adapter_names=``) loop over the batch's unique adapters in every LoRA layer and
pick their rows by index: shapes that change with the batch's mix, many small kernels, nothing a CUDA
graph can hold. Here every LoRA-targeted Linear holds all adapters' A and B matrices stacked into
``[n_slots, in, r]`` and ``[n_slots, r, out]`` (slot 0 is zeros: "base, no adapter"; ranks padded with
zeros to the largest; each adapter's scaling alpha/r folded into its B), and one slot-index tensor,
shared by all layers, names each row's slot. ``set_slots`` updates it in place, so a compiled forward
or a captured CUDA graph reads the new values without being traced or captured again (a new batch
size is a new shape, and is traced anew).

Two forms compute the same ``y = base(x) + x·A[slot]·B[slot]``:

* ``onehot`` (the default): x times every adapter's A side by side (``[in, n·r]``), a per-row mask that
  keeps the row's own r columns, times every B stacked (``[n·r, out]``). Two plain matmuls over the
  adapters' weights (a few MB per decoder layer, whatever the batch size), no gather; the work is that
  of one adapter of rank n·r, small next to the base layer's.
* ``bgmv``: punica's per-row gather in plain torch, ``bmm(bmm(x, A[idx]), B[idx])``. Each call
  materializes ``[batch, in, r]`` and ``[batch, r, out]`` per layer: at batch 256 and rank 16 that is
  more bytes per decode step than the base model's own weights, so it is kept to compare against
  (tests, ``scenestream bench gpu``).

The numerics follow PEFT's mixed-batch path: the adapter product in float32 (PEFT upcasts bf16 adapter
weights when it loads them), cast to the model's dtype, then added to the base layer's output.
Adapters are read straight from PEFT's folders (``adapter_config.json``, ``adapter_model.safetensors``);
no PeftModel is built. Options this does not implement (DoRA, LoRA bias, modules_to_save, alpha
patterns, ...) are refused with an error naming them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence, Union

if TYPE_CHECKING:
    import torch

BASE = "base"  # the slot of "no adapter" (the engines' name for it)
FORMS = ("onehot", "bgmv")
PEFT_PREFIX = "base_model.model."  # PEFT's key prefix in front of the model's own module path

# adapter_config.json entries whose non-default values change the math; refused, not ignored
_UNSUPPORTED = {
    "use_dora": (False, None),
    "bias": ("none", None),
    "lora_bias": (False, None),
    "fan_in_fan_out": (False, None),
    "modules_to_save": (None, []),
    "alpha_pattern": ({}, None),
    "layer_replication": (None,),
    "trainable_token_indices": (None,),
    "use_qalora": (False, None),
    "alora_invocation_tokens": (None,),
    "target_parameters": (None, []),
    "use_bdlora": (False, None),
}


@dataclass(frozen=True)
class AdapterWeights:
    """One PEFT LoRA adapter as float32 matrices: module path → (A [in, r], B [r, out], scaling folded in)."""

    name: str
    modules: dict
    rank: int


def read_adapter(folder: Path, name: str | None = None) -> AdapterWeights:
    """Read a PEFT LoRA adapter folder (no PeftModel); refuses options whose math this module lacks."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not config_file.exists() or not weights_file.exists():
        raise FileNotFoundError(
            f"{folder} is not a PEFT adapter folder (needs adapter_config.json and adapter_model.safetensors)"
        )
    config = json.loads(config_file.read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{folder}: peft_type {config.get('peft_type')!r}, only LORA adapters can be stacked")
    for key, allowed in _UNSUPPORTED.items():
        if key in config and config[key] not in allowed:
            raise ValueError(
                f"{folder}: adapter_config {key}={config[key]!r} is not supported by the stacked "
                "LoRA (use SCENESTREAM_LORA_KERNEL=peft for this adapter)"
            )
    alpha = float(config["lora_alpha"])
    rslora = bool(config.get("use_rslora"))
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(weights_file).items():
        head, sep, tail = key.rpartition(".lora_")
        if not key.startswith(PEFT_PREFIX) or not sep or tail not in ("A.weight", "B.weight"):
            raise ValueError(
                f"{folder}: tensor {key!r} is not a LoRA A/B weight of a Linear layer; the stacked "
                "LoRA supports nothing else"
            )
        parts.setdefault(head[len(PEFT_PREFIX) :], {})[tail[0]] = tensor
    if not parts:
        raise ValueError(f"{folder}: no LoRA weights in {weights_file.name}")
    modules = {}
    for path, ab in sorted(parts.items()):
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{folder}: {path} has lora_{'/'.join(sorted(ab))} only")
        a, b = ab["A"].to(torch.float32), ab["B"].to(torch.float32)  # [r, in], [out, r] as nn.Linear keeps them
        r = a.shape[0]
        if a.dim() != 2 or b.dim() != 2 or b.shape[1] != r:
            raise ValueError(f"{folder}: {path} has lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}")
        # PEFT: scaling = alpha / r (rsLoRA: alpha / sqrt(r)), r being this module's rank (rank_pattern included)
        scaling = alpha / math.sqrt(r) if rslora else alpha / r
        modules[path] = (a.t().contiguous(), (b.t() * scaling).contiguous())
    return AdapterWeights(name=name or folder.name, modules=modules, rank=max(a.shape[1] for a, _b in modules.values()))


def _module_class():
    import torch

    class StackedLoRALinear(torch.nn.Module):
        """A Linear plus every adapter's LoRA, each row using its slot's (see the module docstring)."""

        def __init__(self, base_layer, a, b, form: str) -> None:
            super().__init__()
            if form not in FORMS:
                raise ValueError(f"unknown stacked LoRA form {form!r}: one of {', '.join(FORMS)}")
            self.base_layer = base_layer
            self.form = form
            self.register_buffer("lora_a", a, persistent=False)  # [n_slots, in, r]
            self.register_buffer("lora_b", b, persistent=False)  # [n_slots, r, out]
            n, _in, r = a.shape
            # slot 0 is zeros: the one-hot form leaves it out, a base row's mask is all zeros
            self.register_buffer(
                "lora_a_cat", a[1:].permute(1, 0, 2).reshape(_in, (n - 1) * r).contiguous(), persistent=False
            )
            self.register_buffer("lora_b_cat", b[1:].reshape((n - 1) * r, -1).contiguous(), persistent=False)
            self.register_buffer("slot_idx", None, persistent=False)  # set by StackedLoRA.set_slots, shared
            self.register_buffer("slot_mask", None, persistent=False)

        def forward(self, x):
            import torch

            y = self.base_layer(x)
            if self.slot_idx is None:
                raise RuntimeError("stacked LoRA: call set_slots(names) with one adapter name per batch row first")
            if x.dim() != 3 or x.shape[0] != self.slot_idx.shape[0]:
                raise RuntimeError(
                    f"stacked LoRA: input {tuple(x.shape)} but slots for {self.slot_idx.shape[0]} "
                    "rows; set_slots needs one name per batch row"
                )
            h = x.to(self.lora_a.dtype)
            if self.form == "onehot":
                delta = ((h @ self.lora_a_cat) * self.slot_mask) @ self.lora_b_cat
            else:
                delta = torch.bmm(torch.bmm(h, self.lora_a[self.slot_idx]), self.lora_b[self.slot_idx])
            return y + delta.to(y.dtype)

    return StackedLoRALinear


_CLASS = None


def stacked_linear_class():
    """The nn.Module class of a stacked LoRA layer (made on first use: torch is imported lazily)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _module_class()
    return _CLASS


class StackedLoRA:
    """Every adapter's LoRA on a plain transformers model, a slot per row; see the module docstring."""

    def __init__(self, model, names: Sequence[str], layers: dict, form: str, rank: int) -> None:
        self.model = model
        self.names = tuple(names)  # slot order; names[0] is BASE
        self.layers = layers  # module path → StackedLoRALinear
        self.form = form
        self.rank = rank
        self.slot_idx = None  # the current batch's, shared by every layer
        self.slot_mask = None
        self._by_batch: dict = {}  # batch size → (slot index [batch], one-hot mask [batch, 1, n·r])

    @classmethod
    def attach(
        cls, model, adapters: Mapping[str, Union[Path, AdapterWeights]], form: str = "onehot", dtype=None
    ) -> StackedLoRA:
        """Replace every Linear that any adapter targets by a stacked layer; ``adapters``: name → PEFT folder
        (or weights already read). ``dtype`` of the adapter math: float32 unless given (as PEFT does)."""
        import torch

        if form not in FORMS:
            raise ValueError(f"unknown stacked LoRA form {form!r}: one of {', '.join(FORMS)}")
        if not adapters:
            raise ValueError("no adapters to stack")
        if BASE in adapters:
            raise ValueError(f"{BASE!r} is the name of the no-adapter slot, not an adapter name")
        layer_class = stacked_linear_class()
        if any(isinstance(m, layer_class) for m in model.modules()):
            raise ValueError("this model already has stacked LoRA layers")
        if any(type(m).__module__.startswith("peft.") for m in model.modules()):
            raise ValueError("this model holds PEFT layers: attach the stacked LoRA to the plain base model")
        weights = [w if isinstance(w, AdapterWeights) else read_adapter(Path(w), name) for name, w in adapters.items()]
        dtype = dtype or torch.float32
        rank = max(w.rank for w in weights)
        paths = sorted({p for w in weights for p in w.modules})
        layers = {}
        for path in paths:
            try:
                base = model.get_submodule(path)
            except AttributeError as exc:
                raise ValueError(f"adapter module {path!r} is not in this model ({type(model).__name__})") from exc
            if not isinstance(base, torch.nn.Linear):
                raise ValueError(f"adapter module {path!r} is a {type(base).__name__}, only Linear layers are stacked")
            a = torch.zeros(len(weights) + 1, base.in_features, rank, dtype=dtype)
            b = torch.zeros(len(weights) + 1, rank, base.out_features, dtype=dtype)
            for slot, w in enumerate(weights, start=1):
                if path not in w.modules:
                    continue  # this adapter leaves the layer alone: its slot stays zeros
                wa, wb = w.modules[path]
                if wa.shape[0] != base.in_features or wb.shape[1] != base.out_features:
                    raise ValueError(
                        f"adapter {w.name!r}: {path} is {wa.shape[0]}→{wb.shape[1]}, the model's layer "
                        f"{base.in_features}→{base.out_features}"
                    )
                a[slot, :, : wa.shape[1]] = wa
                b[slot, : wb.shape[0], :] = wb
            device = base.weight.device
            layer = layer_class(base, a.to(device), b.to(device), form)
            parent, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, layer)
            layers[path] = layer
        return cls(model, [BASE, *(w.name for w in weights)], layers, form, rank)

    def detach(self) -> None:
        """Put the plain Linear layers back (the model is as before :meth:`attach`); this object is spent."""
        for path, layer in self.layers.items():
            parent, _, child = path.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, child, layer.base_layer)
        self.layers = {}
        self._by_batch = {}

    def slot_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no adapter {name!r} in the stacked LoRA (slots: {', '.join(self.names)})") from None

    def set_slots(self, names: Sequence[str]) -> None:
        """One adapter name (or ``base``) per batch row, for the next forward/generate calls. The slot tensors of
        a batch size are made once and then overwritten in place, so compiled graphs and CUDA graphs captured
        for that size keep reading them."""
        import torch

        if not names:
            raise ValueError("set_slots needs one name per batch row, got none")
        first = next(iter(self.layers.values()))
        held = self._by_batch.get(len(names))
        # outside inference mode: tensors made inside it could not be updated in place later
        with torch.inference_mode(False), torch.no_grad():
            slots = torch.tensor([self.slot_of(n) for n in names], dtype=torch.long)
            n_adapters, r = len(self.names) - 1, self.rank
            owner = torch.arange(n_adapters * r) // r + 1  # the slot each column of the one-hot form belongs to
            mask = (owner[None, :] == slots[:, None]).unsqueeze(1).to(first.lora_a.dtype)
            if held is None:
                held = (slots.to(first.lora_a.device, copy=True), mask.to(first.lora_a.device, copy=True))
                self._by_batch[len(names)] = held
            else:
                held[0].copy_(slots)
                held[1].copy_(mask)
        self.slot_idx, self.slot_mask = held
        if first.slot_idx is not self.slot_idx:
            for layer in self.layers.values():
                layer.slot_idx = self.slot_idx
                layer.slot_mask = self.slot_mask
