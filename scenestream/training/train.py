"""Train one register's LoRA adapter, independently of the others.

    scenestream train --register body                   # CPU or one GPU, whichever is there
    scenestream train --register body --qlora           # one CUDA GPU, 4-bit base (bitsandbytes)
    accelerate launch --config_file ops/accelerate_deepspeed.yaml -m scenestream.cli train --register body

Data: ``data/decoder/<register>.jsonl`` (Russian and English user texts with
an answer in the register). Each example becomes a scene (the scene builder
runs on the text, the register is the adapter's) and the prompt of
:mod:`prompt`; the loss is on the answer tokens only. The *test* split is
never trained on: the held-out loss at the end is computed on it, for the
adapter and for the base model without it.

Checkpoints (adapter, optimizer, step) go to ``<out>/.checkpoints/<register>``
every ``--save-every`` steps; ``--resume`` continues from there. The adapter is
saved as bf16 safetensors.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from scenestream.schemas.registers import catalogue
from scenestream.training.card import TRAIN_RECORD, write_model_card
from scenestream.training.examples import load_examples, prompts_for, router_agreed

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    register: str
    out: Path
    epochs: float = 2.0
    batch_size: int = 8
    lr: float = 3e-4
    rank: int = 8
    alpha: int = 16
    max_len: int = 256
    save_every: int = 50
    resume: bool = False
    qlora: bool = False
    limit: Optional[int] = None  # train on the first N examples only (smoke runs)
    router_agreed: bool = False  # only the examples whose answer the scene router assigns to the register
    sampled: Optional[Path] = None  # extra train rows: router-filtered sampled answers (sampling.py)
    max_sampled: Optional[int] = None  # only N sampled rows: the router's surest, spread over topics and languages
    spread_sampled: bool = True  # max_sampled spread over the texts' topics and languages (False: the surest N)
    seed: int = 0


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], max_len: int) -> list[tuple[list[int], list[int]]]:
    """input ids and labels (-100 on the prompt) for each pair."""
    from scenestream.agents.decoder.base_model import encode_prompt

    out = []
    for prompt, answer in pairs:
        p = encode_prompt(tokenizer, prompt)
        a = tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (p + a)[:max_len]
        labels = ([-100] * len(p) + a)[:max_len]
        out.append((ids, labels))
    return out


def collate(batch, pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(batch):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def answer_loss(model, batch):
    """The mean next-token loss over the answer tokens (labels ≠ -100), as ``model(**batch).loss`` gives
    it, with the vocabulary projection computed only where some row of the batch has an answer token
    next: Gemma's 262,144-entry head is most of a step's work, and the prompt's positions need none of it."""
    import torch.nn.functional as F

    targets = batch["labels"][:, 1:]
    keep = (targets != -100).any(0).nonzero().squeeze(1)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    wanted = targets[:, keep]
    if logits.shape[1] != wanted.shape[1]:
        raise RuntimeError(
            f"the model returned logits for {logits.shape[1]} positions, not the {wanted.shape[1]} "
            "asked for with logits_to_keep (a causal LM of transformers ≥ 4.50 is needed)"
        )
    return (
        F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), wanted.reshape(-1), ignore_index=-100, reduction="mean"
        )
        if int((wanted != -100).sum())
        else logits.sum() * 0.0
    )


def mean_loss(model, batches) -> float:
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in batches:
            n = int((batch["labels"][:, 1:] != -100).sum())
            loss = answer_loss(model, batch)
            total += float(loss) * n
            count += n
    model.train()
    return total / max(1, count)


def heldout_losses(
    base_model: Path, adapter: Path, register: str, batch_size: int = 8, max_len: int = 256, limit: Optional[int] = None
) -> dict:
    """The held-out (test split) answer loss of the adapter in ``adapter`` and of the base model without it,
    as training reports them at its end (bf16, as trained); for adapters already saved."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"no LoRA adapter in {adapter} (adapter_config.json missing)")
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16), adapter)
    test = encode_pairs(tokenizer, prompts_for(load_examples(register, "test")[:limit], register), max_len)
    batches = [collate(test[i : i + batch_size], pad_id) for i in range(0, len(test), batch_size)]
    adapter_loss = mean_loss(model, batches)
    with model.disable_adapter():
        base_loss = mean_loss(model, batches)
    return {
        "test_examples": len(test),
        "heldout_loss_adapter": round(adapter_loss, 4),
        "heldout_loss_base": round(base_loss, 4),
    }


def train(cfg: TrainConfig, base_model: Path, progress: bool = True) -> dict:
    """Train (or resume) one adapter; returns the held-out losses."""
    import torch
    from accelerate import Accelerator
    from peft import LoraConfig, PeftModel, get_peft_model
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.register not in catalogue():
        raise ValueError(catalogue().unknown(cfg.register))
    sampled_rows = []  # checked before the model is loaded
    if cfg.sampled is not None:
        from scenestream.training.sampling import load_sampled

        sampled_rows = load_sampled(cfg.sampled, cfg.register, cfg.max_sampled, cfg.spread_sampled)[: cfg.limit]
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() and not cfg.qlora else "no")
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    load_kwargs: dict = {"dtype": torch.bfloat16}
    if cfg.qlora:
        if not torch.cuda.is_available():
            raise RuntimeError("--qlora needs a CUDA GPU (bitsandbytes 4-bit); train without it on CPU")
        from transformers import BitsAndBytesConfig

        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    model = AutoModelForCausalLM.from_pretrained(base_model, **load_kwargs)
    if cfg.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    checkpoint = cfg.out / ".checkpoints" / cfg.register
    if cfg.resume and (checkpoint / "adapter_config.json").exists():
        model = PeftModel.from_pretrained(model, checkpoint, is_trainable=True)
    else:
        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.05, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
            ),
        )
    train_rows = load_examples(cfg.register, "train")[: cfg.limit]
    available = len(train_rows)
    if cfg.router_agreed:
        train_rows = router_agreed(train_rows, cfg.register)
    train_rows = train_rows + sampled_rows
    test_rows = load_examples(cfg.register, "test")[: cfg.limit]
    train_data = encode_pairs(tokenizer, prompts_for(train_rows, cfg.register), cfg.max_len)
    test_data = encode_pairs(tokenizer, prompts_for(test_rows, cfg.register), cfg.max_len)
    loader = torch.utils.data.DataLoader(
        train_data, batch_size=cfg.batch_size, shuffle=True, collate_fn=lambda b: collate(b, pad_id)
    )
    test_loader = torch.utils.data.DataLoader(
        test_data, batch_size=cfg.batch_size, collate_fn=lambda b: collate(b, pad_id)
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    total_steps = max(1, math.ceil(len(loader) * cfg.epochs))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 10) * max(0.05, 1 - step / total_steps)
    )
    model, optimizer, loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, loader, test_loader, scheduler
    )
    step = 0
    state_file = checkpoint / "trainer.pt"
    if cfg.resume and state_file.exists():
        state = torch.load(state_file, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]

    def save_checkpoint() -> None:
        if accelerator.is_main_process:
            accelerator.unwrap_model(model).save_pretrained(checkpoint)
            torch.save(
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step}, state_file
            )

    model.train()
    losses: list[float] = []
    with Progress(
        TextColumn(f"train {cfg.register}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(),
        disable=not (progress and accelerator.is_main_process),
    ) as bar:
        task = bar.add_task("train", total=total_steps, completed=step, loss=float("nan"))
        while step < total_steps:
            for batch in loader:
                if step >= total_steps:
                    break
                loss = answer_loss(model, batch)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step += 1
                losses.append(loss.detach().item())
                bar.update(task, advance=1, loss=sum(losses[-10:]) / len(losses[-10:]))
                if step % cfg.save_every == 0:
                    save_checkpoint()
                    if progress and accelerator.is_main_process and not bar.console.is_terminal:
                        bar.console.print(
                            f"train {cfg.register}: step {step}/{total_steps}, "
                            f"loss {sum(losses[-10:]) / len(losses[-10:]):.3f}, checkpoint saved"
                        )
    save_checkpoint()
    adapter_loss = mean_loss(model, test_loader)
    unwrapped = accelerator.unwrap_model(model)
    with unwrapped.disable_adapter():
        base_loss = mean_loss(model, test_loader)
    result = {
        "register": cfg.register,
        "steps": step,
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "router_agreed": cfg.router_agreed,
        "train_examples_available": available,
        "sampled_examples": len(sampled_rows),
        "sampled_from": cfg.sampled.name if cfg.sampled else None,
        "sampled_spread": cfg.spread_sampled if cfg.max_sampled is not None else None,
        "train_examples": len(train_data),
        "test_examples": len(test_data),
        "heldout_loss_adapter": round(adapter_loss, 4),
        "heldout_loss_base": round(base_loss, 4),
        "final_train_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4),
    }
    if accelerator.is_main_process:
        final = cfg.out / cfg.register
        unwrapped = unwrapped.to(torch.bfloat16)
        unwrapped.save_pretrained(final, safe_serialization=True)
        (final / TRAIN_RECORD).write_text(json.dumps(result, indent=1))
        write_model_card(final)  # in place of PEFT's empty template
    return result
