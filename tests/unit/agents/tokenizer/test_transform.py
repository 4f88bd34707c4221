import pytest

from scenestream.agents.tokenizer import stopwords
from scenestream.agents.tokenizer.symbols import normalize, split_symbols
from scenestream.agents.tokenizer.transform import InputError, Tokenizer, detect_lang
from scenestream.schemas import RawText


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(max_text_bytes=200)


def tok(tokenizer, text):
    return tokenizer.tokenize(RawText(message_id="m1", session_id="s1", text=text))


def test_seed_example(tokenizer):
    out = tok(tokenizer, "Почему я не чувствую шаг в себе?")
    assert out.piece_text.startswith("почему▁я▁не▁чувствую▁шаг▁в▁")
    assert out.lang == "ru"
    words = [h.text for h in out.hypertokens]
    assert {"чувствую", "шаг"} <= set(words)
    assert not set(words) & stopwords.ALL
    assert out.message_id == "m1" and out.session_id == "s1"
    assert len(out.ids) == len(out.pieces)


def test_hypertokens_are_ranked_and_weighted(tokenizer):
    out = tok(tokenizer, "The evening light sits on the roofs like a tired bird, and the light stays.")
    weights = [h.weight for h in out.hypertokens]
    assert weights == sorted(weights, reverse=True)
    assert weights[0] == 1.0 and all(0 < w <= 1 for w in weights)
    assert "the" not in {h.text for h in out.hypertokens}
    assert out.lang == "en"


def test_symbols_stay_whole(tokenizer):
    text = "Тишина 🫁 и Δ41, ∑ ≈ ∞ — семья 👨‍👩‍👧 и флаг 🇫🇷"
    out = tok(tokenizer, text)
    assert out.symbols == ["🫁", "Δ41", "∑", "≈", "∞", "👨‍👩‍👧", "🇫🇷"]
    for symbol in out.symbols:
        assert symbol in out.pieces  # one piece each, never split
    assert out.ids[out.pieces.index("Δ41")] != tokenizer.sp.unk_id()  # a user-defined symbol of the model
    assert "Δ41" in out.normalized  # case folding leaves symbols alone


def test_symbol_glued_to_words(tokenizer):
    out = tok(tokenizer, "огонь🔥внутри")
    assert "🔥" in out.pieces
    assert {h.text for h in out.hypertokens} >= {"огонь", "внутри"}


def test_normalization_casefolds_and_collapses_space():
    text, symbols = normalize("  Привет,\tМИР  Δ7  ")
    assert text == "привет, мир Δ7" and symbols == ["Δ7"]


def test_split_symbols_plain_text_fast_path():
    assert split_symbols("just words") == [("just words", False)]


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_is_refused(tokenizer, text):
    with pytest.raises(InputError) as err:
        tok(tokenizer, text)
    assert err.value.error_type == "empty_text"


def test_too_long_text_is_refused(tokenizer):
    with pytest.raises(InputError) as err:
        tok(tokenizer, "слово " * 100)
    assert err.value.error_type == "too_long" and "200" in err.value.reason


def test_lone_surrogate_is_refused(tokenizer):
    with pytest.raises(InputError) as err:
        tok(tokenizer, "bad \ud800 text")
    assert err.value.error_type == "invalid_utf8"


def test_deterministic(tokenizer):
    a = tok(tokenizer, "Свобода и время")
    b = tok(tokenizer, "Свобода и время")
    assert a.pieces == b.pieces and a.hypertokens == b.hypertokens


@pytest.mark.parametrize(
    "text,lang", [("hello there", "en"), ("привет", "ru"), ("12345 !!", "und"), ("hello привет мир world", "mixed")]
)
def test_detect_lang(text, lang):
    assert detect_lang(text) == lang
