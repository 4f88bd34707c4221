"""The whole path text → scene → LoRA → text through the real broker, transformers + PEFT engine."""

import asyncio

import pytest

from scenestream.client import Watcher, publish, raw_text
from scenestream.runtime import running_worker, select_stages
from scenestream.schemas import LoraOutput, Scene
from scenestream.settings import Settings
from scenestream.topics import LORA_OUTPUTS, RAW_TEXT, SCENES, TOKENS
from scenestream.training.provision import provision


@pytest.fixture(scope="module")
def base_model():
    return provision(Settings(), progress=False)  # once per machine; later runs find it ready


def test_ask_path_through_the_broker(settings_factory, base_model):
    s = settings_factory(engine="transformers", max_new_tokens=24)
    texts = [("Почему я не чувствую шаг в себе?", None), ("How many minutes are in a day?", "logician")]

    async def go():
        async with running_worker(s, select_stages(None, s)):
            watched = {SCENES.full_name(s): Scene, LORA_OUTPUTS.full_name(s): LoraOutput}
            watcher = Watcher(
                s,
                watched,
                [d.dlq_name(s) for d in (RAW_TEXT, TOKENS, SCENES)],
                on_partial=lambda piece: partials.setdefault(piece.message_id, []).append(piece),
            )
            await watcher.start()
            records = [raw_text(t, session_id="dec-1").model_copy(update={"force_register": r}) for t, r in texts]
            await publish(s, records)
            found = [await watcher.wait(r.message_id, LORA_OUTPUTS.full_name(s), timeout=240) for r in records]
            await watcher.stop()
            return records, found

    partials: dict = {}
    records, found = asyncio.run(go())
    for record, got in zip(records, found):
        out = got["lora_output"]
        assert out.message_id == record.message_id and out.session_id == "dec-1"
        assert out.scene_id == got["scene"].scene_id and out.delta_code == got["scene"].delta_code
        assert out.engine == "transformers" and out.completion_tokens > 0
        assert {"queue", "first_token", "generate"} <= set(out.timings_ms)
        pieces = partials.get(record.message_id, [])  # streamed before the final record, in order
        assert pieces and [p.seq for p in pieces] == list(range(len(pieces))) and out.seq == len(pieces)
        assert out.text.startswith("".join(p.text for p in pieces)) and not any(p.final for p in pieces)
    first, second = (got["lora_output"] for got in found)
    assert first.register == found[0]["scene"].register  # routed by the scene
    assert second.register == "logician"  # forced
    assert first.text.strip(), "the answer is empty"


def test_the_provisioned_tokenizer_reads_words_and_the_adapter_knows_them(base_model):
    """Gemma's tokenizer is a BPE with merges: whole words, not single characters (transformers 5 reads the
    GGUF's tokenizer back without merges); the shipped adapter's held-out loss is what training recorded."""
    import json

    from transformers import AutoTokenizer

    from scenestream.agents.decoder.base_model import check_tokenizer, encode_prompt
    from scenestream.agents.decoder.engines import SHIPPED_ADAPTERS
    from scenestream.training.examples import load_examples, prompts_for
    from scenestream.training.train import collate, encode_pairs

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    check_tokenizer(tokenizer)
    pieces = [tokenizer.decode([i]) for i in encode_prompt(tokenizer, "Text: Why do people believe")]
    assert pieces == ["<bos>", "Text", ":", " Why", " do", " people", " believe"]

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from scenestream.training.train import mean_loss

    rows = load_examples("logician", "test")[:8]
    batch = collate(encode_pairs(tokenizer, prompts_for(rows, "logician"), 256), tokenizer.pad_token_id)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16), SHIPPED_ADAPTERS / "logician"
    ).eval()
    recorded = json.loads((SHIPPED_ADAPTERS / "logician" / "scenestream-train.json").read_text())
    assert mean_loss(model, [batch]) < recorded["heldout_loss_base"]  # 40 rows there, 8 here
    with model.disable_adapter():
        assert mean_loss(model, [batch]) < 5.0  # single characters gave 8
