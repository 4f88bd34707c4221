"""Adapter training's pieces that need no base model: the answer-only loss, the batches, router agreement."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from scenestream.training.examples import router_agreed  # noqa: E402
from scenestream.training.train import answer_loss, collate  # noqa: E402


def tiny_gemma(vocab: int = 300):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=8,
        max_position_embeddings=128,
        layer_types=["sliding_attention", "full_attention"],
    )
    return Gemma3ForCausalLM(config).eval()


def batch_of(pairs, pad: int = 0):
    """(prompt ids, answer ids) → the training batch: labels -100 on the prompt, right-padded rows."""
    return collate([(p + a, [-100] * len(p) + a) for p, a in pairs], pad)


def test_answer_loss_equals_the_models_own_loss():
    model = tiny_gemma()
    g = torch.Generator().manual_seed(1)

    def ids(n):
        return torch.randint(1, 300, (n,), generator=g).tolist()

    batch = batch_of([(ids(12), ids(5)), (ids(4), ids(9)), (ids(20), ids(2))])
    with torch.no_grad():
        expected = model(**batch).loss
        got = answer_loss(model, batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_answer_loss_trains_only_through_the_answer_and_lora():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_gemma(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    batch = batch_of([([5, 6, 7, 8], [9, 10, 11]), ([5, 6], [12, 13, 14, 15])])
    with torch.no_grad():
        expected = model(**batch).loss
    loss = answer_loss(model, batch)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-5)
    loss.backward()
    trained = [name for name, p in model.named_parameters() if p.grad is not None]
    assert trained and all("lora_" in name for name in trained)


def test_router_agreed_keeps_the_answers_in_the_registers_voice():
    rows = [
        {"id": "a", "answer": "1) Посылка верна; 2) следовательно, вывод: 7 × 8 = 56. Проверка: 70 − 14 = 56."},
        {"id": "b", "answer": "Вдохни медленно, почувствуй стопы на полу, расслабь плечи и живот."},
    ]
    kept = router_agreed(rows, "logician")
    assert [row["id"] for row in kept] == ["a"]
    assert [row["id"] for row in router_agreed(rows, "body")] == ["b"]


def test_gemma_tokenizer_is_rebuilt_as_bpe_with_merges_from_the_piece_scores():
    from scenestream.agents.decoder.base_model import check_tokenizer
    from scenestream.training.provision import bpe_tokenizer

    special = {
        "pad_token": "<pad>",
        "eos_token": "<eos>",
        "bos_token": "<bos>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
    }
    pieces = [(t, -1000.0) for t in special.values()]
    pieces += [
        ("th", -1.0),
        ("▁th", -2.0),
        ("▁the", -3.0),
        ("er", -4.0),
        ("the", -5.0),
        ("▁", -10.0),
        ("t", -11.0),
        ("h", -12.0),
        ("e", -13.0),
        ("r", -14.0),
    ]
    tokenizer = bpe_tokenizer(pieces, special)
    # merges by score: th, ▁+th, ▁th+e, (e+r no longer adjacent), th+e
    assert tokenizer.tokenize("the ther") == ["the", "▁the", "r"]
    with pytest.raises(RuntimeError, match="single characters|no BPE merges"):
        check_tokenizer(bpe_tokenizer(pieces[:5] + pieces[-5:], special))  # no pieces longer than one character
