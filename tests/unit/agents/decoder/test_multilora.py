"""The stacked LoRA against PEFT's mixed-adapter batches, on a tiny random Gemma 3 (no model files needed),
and the transformers engine's choice of LoRA kernel and compiled decode from the settings."""

import copy
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from scenestream.agents.decoder.fast_decode import batch_bucket, compile_config, compile_decision  # noqa: E402
from scenestream.agents.decoder.multilora import BASE, StackedLoRA, read_adapter  # noqa: E402

NAMES = ("poet", "logician", "body", "philosopher")
ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# ranks, alphas and targets differ on purpose: padding to the largest rank, scaling, untargeted layers, rsLoRA
ADAPTERS = {
    "poet": dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS),
    "logician": dict(r=8, lora_alpha=16, target_modules=ALL_TARGETS),
    "body": dict(r=2, lora_alpha=3, target_modules=["q_proj", "down_proj"]),
    "philosopher": dict(r=8, lora_alpha=4, target_modules=ALL_TARGETS, use_rslora=True),
}
ROWS = ["poet", BASE, "logician", "body", "philosopher", "body", BASE, "poet"]


def tiny_config():
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=6,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
    )


def save_adapters(model, folder):
    """The four adapters, random (B too: PEFT starts B at zero), saved by PEFT as it saves trained ones."""
    from peft import LoraConfig, get_peft_model

    generator = torch.Generator().manual_seed(1)
    for name, options in ADAPTERS.items():
        peft = get_peft_model(copy.deepcopy(model), LoraConfig(lora_dropout=0.05, init_lora_weights=False, **options))
        with torch.no_grad():
            for param_name, param in peft.named_parameters():
                if "lora_" in param_name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        peft.save_pretrained(folder / name)
    return {name: folder / name for name in ADAPTERS}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(base model in float32, adapter folders, PEFT model with all four loaded)."""
    from peft import PeftModel
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    base = Gemma3ForCausalLM(tiny_config()).eval()
    folders = save_adapters(base, tmp_path_factory.mktemp("adapters"))
    peft = PeftModel.from_pretrained(copy.deepcopy(base), folders["poet"], adapter_name="poet")
    for name in NAMES[1:]:
        peft.load_adapter(folders[name], adapter_name=name)
    return base, folders, peft.eval()


def batch():
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 96, (len(ROWS), 9), generator=generator)
    mask = torch.ones_like(ids)
    ids[1, :3], mask[1, :3] = 0, 0  # left padding, as the engine pads
    ids[4, :5], mask[4, :5] = 0, 0
    return ids, mask


def peft_names(rows):
    return ["__base__" if n == BASE else n for n in rows]


def stacked_copy(base, folders, form):
    """A copy of the base model with the adapters stacked on it (slots not set yet), and the test batch."""
    stacked = copy.deepcopy(base)
    return stacked, StackedLoRA.attach(stacked, folders, form=form), *batch()


@pytest.mark.parametrize("form", ["onehot", "bgmv"])
def test_stacked_logits_equal_peft_mixed_batch_and_base_rows_equal_the_base_model(tiny, form):
    base, folders, peft = tiny
    stacked, lora, ids, mask = stacked_copy(base, folders, form)
    with torch.no_grad():
        want = peft(input_ids=ids, attention_mask=mask, adapter_names=peft_names(ROWS)).logits
        lora.set_slots(ROWS)
        got = stacked(input_ids=ids, attention_mask=mask).logits
        plain = base(input_ids=ids, attention_mask=mask).logits
    assert lora.names == (BASE, *NAMES) and lora.rank == 8
    assert (want - plain).abs().max() > 0.1  # the adapters do change the answer
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    for i, name in enumerate(ROWS):
        if name == BASE:
            assert torch.equal(got[i], plain[i])


@pytest.mark.parametrize("form", ["onehot", "bgmv"])
def test_stacked_greedy_generation_is_peft_s(tiny, form):
    base, folders, peft = tiny
    stacked, lora, ids, mask = stacked_copy(base, folders, form)
    options = dict(
        attention_mask=mask,
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        repetition_penalty=1.3,
    )
    with torch.inference_mode():
        want = peft.generate(input_ids=ids, adapter_names=peft_names(ROWS), **options)
        lora.set_slots(ROWS)
        got = stacked.generate(input_ids=ids, **options)
    assert torch.equal(got, want)


def test_set_slots_and_forward_refuse_what_they_cannot_serve(tiny):
    base, folders, _peft = tiny
    stacked = copy.deepcopy(base)
    lora = StackedLoRA.attach(stacked, folders)
    ids, mask = batch()
    with pytest.raises(RuntimeError, match="set_slots"):  # no slots yet
        stacked(input_ids=ids, attention_mask=mask)
    with pytest.raises(KeyError, match="nobody"):
        lora.set_slots(["poet", "nobody"])
    lora.set_slots(["poet", "body"])
    with pytest.raises(RuntimeError, match="one name per batch row"):
        stacked(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match="already has stacked LoRA"):
        StackedLoRA.attach(stacked, folders)


def test_adapters_with_options_the_stacked_lora_lacks_are_refused(tiny, tmp_path):
    _base, folders, _peft = tiny
    assert read_adapter(folders["body"]).rank == 2
    for key, value in (
        ("use_dora", True),
        ("bias", "all"),
        ("alpha_pattern", {"q_proj": 4}),
        ("modules_to_save", ["lm_head"]),
    ):
        folder = tmp_path / key
        folder.mkdir()
        config = json.loads((folders["poet"] / "adapter_config.json").read_text())
        config[key] = value
        (folder / "adapter_config.json").write_text(json.dumps(config))
        (folder / "adapter_model.safetensors").write_bytes((folders["poet"] / "adapter_model.safetensors").read_bytes())
        with pytest.raises(ValueError, match=key):
            read_adapter(folder)


def test_compile_decision_and_batch_buckets():
    assert compile_decision("auto", "cpu", "stacked") == (
        False,
        "SCENESTREAM_COMPILE=auto on cpu: compiling only pays on CUDA",
    )
    assert compile_decision("auto", "cuda", "stacked")[0] and compile_decision("on", "cpu", None)[0]
    off, why = compile_decision("on", "cuda", "peft")
    assert not off and "SCENESTREAM_LORA_KERNEL=peft" in why
    assert not compile_decision("off", "cuda", "stacked")[0]
    assert [batch_bucket(n) for n in (1, 2, 3, 5, 16, 17, 256)] == [1, 2, 4, 8, 16, 32, 256]
    config = compile_config("cuda")
    assert config.mode == "reduce-overhead" and config.fullgraph and not config._compile_all_devices
    assert compile_config("cpu", backend="eager").mode is None and compile_config("cpu")._compile_all_devices


# --- the engine ---------------------------------------------------------------------------------------


def tiny_model_folder(base, folder):
    """A base model folder as `scenestream setup` leaves one: weights, config, a (word-level) tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, 96)}}
    words = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.decoder = decoders.WordPiece()
    PreTrainedTokenizerFast(
        tokenizer_object=words, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(folder)
    base.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine_settings(tiny, tmp_path_factory):
    from scenestream.settings import Settings

    base, folders, _peft = tiny
    model = tiny_model_folder(base, tmp_path_factory.mktemp("model"))
    return Settings(base_model=str(model), adapters_dir=folders["poet"].parent, max_new_tokens=6)


def requests():
    from scenestream.agents.decoder.engines import Request

    return [Request(prompt=f"w{5 + i} w{40 + 3 * i} w{70 - i}", adapter=name) for i, name in enumerate(ROWS[:5])]


def test_engine_picks_the_lora_kernel_from_settings(engine_settings):
    from peft import PeftModel

    from scenestream.agents.decoder.engines import TransformersEngine

    answers = {}
    for kernel in ("peft", "stacked", "bgmv"):
        engine = TransformersEngine(engine_settings.model_copy(update={"lora_kernel": kernel}), device="cpu")
        assert engine.lora_kernel == kernel and not engine.compiled  # auto: no compiling on CPU
        if kernel == "peft":
            assert isinstance(engine.net, PeftModel) and engine.lora is None
        else:
            assert not isinstance(engine.net, PeftModel)
            assert engine.lora.form == {"stacked": "onehot", "bgmv": "bgmv"}[kernel]
            assert engine.lora.names == (BASE, *NAMES)
        answers[kernel] = [(g.text, g.adapter, g.completion_tokens) for g in engine.generate(requests())]
    assert answers["stacked"] == answers["peft"] == answers["bgmv"]
    assert [a for _t, a, _n in answers["peft"]] == ROWS[:5]


def test_engine_compiled_decode_pads_the_batch_streams_real_rows_and_reads_slots_changed_in_place(
    engine_settings, monkeypatch
):
    """Static cache and a compiled step (dynamo's tracing, fullgraph; inductor and CUDA graphs need CUDA):
    the same answers as the eager engine; a second batch with other adapters in the rows reuses the traced
    step (slots overwritten in place), and every row still gets its own adapter's answer."""
    import scenestream.agents.decoder.fast_decode as fast_decode
    from scenestream.agents.decoder.engines import TransformersEngine

    eager_on_cpu = fast_decode.compile_config
    monkeypatch.setattr(fast_decode, "compile_config", lambda device: eager_on_cpu(device, backend="eager"))
    plain = TransformersEngine(engine_settings, device="cpu")
    compiled = TransformersEngine(engine_settings.model_copy(update={"compile": "on"}), device="cpu")
    assert compiled.compiled and not plain.compiled  # the warm-up compiled it

    def summary(generations):
        return [(g.text, g.adapter, g.completion_tokens) for g in generations]

    pieces = {}
    got = compiled.generate(requests(), on_delta=lambda i, text: pieces.setdefault(i, []).append(text))
    assert summary(got) == summary(plain.generate(requests()))
    assert set(pieces) <= set(range(5))  # rows 5..7 only pad the batch to 8
    assert {i: "".join(p) for i, p in pieces.items()} == {i: g.text for i, g in enumerate(got) if g.text}
    assert all(g.first_token_ms is not None and g.first_token_ms <= g.total_ms for g in got)
    slots = compiled.lora.slot_idx
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    again = compiled.generate(requests()[::-1])
    assert summary(again) == summary(got)[::-1]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # nothing traced again
    assert compiled.lora.slot_idx is slots and set(compiled.caches.by_batch) == {1, 2, 8}


def test_engine_stops_a_row_whose_on_delta_says_so_and_the_others_go_on(engine_settings):
    """``on_delta`` returning True (a cancel, a finished sentence) stops that row at once: its answer is the
    text it had, its token count short of the limit; the other rows of the batch still get their whole answer."""
    from scenestream.agents.decoder.engines import TransformersEngine

    engine = TransformersEngine(engine_settings, device="cpu")
    whole = engine.generate(requests())
    assert whole[0].completion_tokens == engine_settings.max_new_tokens  # unstopped, row 0 runs to the limit
    pieces: dict[int, list[str]] = {}

    def stop_row_0(i: int, text: str) -> bool:
        pieces.setdefault(i, []).append(text)
        return i == 0

    got = engine.generate(requests(), on_delta=stop_row_0)
    assert got[0].completion_tokens < engine_settings.max_new_tokens
    assert got[0].text == "".join(pieces[0]) and len(pieces[0]) == 1
    assert [(g.text, g.completion_tokens) for g in got[1:]] == [(g.text, g.completion_tokens) for g in whole[1:]]
