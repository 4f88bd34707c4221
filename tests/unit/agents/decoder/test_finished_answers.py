"""Finished answers (no model): stop at a sentence end once long enough, trim at the token limit, and the
streamed pieces stay a prefix of the final text."""

import random
import re

import pytest

from scenestream.agents.decoder.answers import finished
from scenestream.agents.decoder.engines import BASE, Generation
from scenestream.agents.decoder.transform import HOLD_TOKENS, Decoder
from scenestream.schemas.records import GenerationParams
from scenestream.settings import Settings
from tests.unit.agents.decoder.test_prompt_engines import scene

pytestmark = pytest.mark.unit


class WordEngine:
    """One word per step; stops a row when its receiver says so, else runs to the limit (finish 'length')."""

    name = "fake"
    model = "fake-model"
    adapters = {}

    def __init__(self, words):
        self.words = words

    def generate(self, requests, on_delta=None):
        out = []
        for i, request in enumerate(requests):
            limit = request.params.max_new_tokens
            text, reason = "", "length" if len(self.words) >= limit else "stop"
            for word in self.words[:limit]:
                text += word
                if on_delta is not None and on_delta(i, word):
                    reason = "sentence"
                    break
            out.append(Generation(text, BASE, 3, len(text.split()), 1.0, 2.0, reason))
        return out


def decode(words, min_tokens, limit, stream=True):
    settings = Settings(answer_min_tokens=min_tokens)
    partials = []
    decoder = Decoder(WordEngine(words), stream_interval_ms=0, settings=settings)
    sc = scene(params=GenerationParams(max_new_tokens=limit))
    (out,) = decoder.decode([sc], partial=partials.append if stream else None)
    return out, partials


SENTENCES = [" One two three four.", " Five six seven eight nine ten.", " Eleven twelve thirteen."]


def words_of(*sentences):
    return [w for s in sentences for w in re.findall(r" \S+", s)]


def test_an_answer_stops_at_the_first_sentence_end_once_long_enough():
    words = words_of(*SENTENCES)
    out, partials = decode(words, min_tokens=6, limit=80)
    assert out.text == "One two three four. Five six seven eight nine ten." and out.finish_reason == "sentence"
    assert "".join(p.text for p in partials) == out.text


def test_a_short_minimum_never_cuts_mid_sentence_and_zero_means_no_early_stop():
    words = words_of(*SENTENCES)
    out, _ = decode(words, min_tokens=1, limit=80)
    assert out.text == "One two three four." and finished(out.text)
    out, _ = decode(words, min_tokens=0, limit=80)
    assert out.finish_reason == "stop" and out.text.endswith("thirteen.")


def test_the_token_limit_trims_to_the_last_complete_sentence_and_streams_only_that():
    words = words_of(*SENTENCES)
    limit = 12  # ends inside the third sentence
    out, partials = decode(words, min_tokens=0, limit=limit)
    assert out.finish_reason == "length" and out.text == "One two three four. Five six seven eight nine ten."
    streamed = "".join(p.text for p in partials)
    assert out.text.startswith(streamed)


def test_streamed_pieces_are_always_a_prefix_of_the_final_text():
    rng = random.Random(3)
    vocab = ["word", "слово", "a", "b."]
    for _ in range(300):
        ends = ["", "", "", ".", "!", "?", ",", ";"]
        words = [" " + rng.choice(vocab) + rng.choice(ends) for _ in range(rng.randint(1, 60))]
        limit = rng.randint(1, 60)
        least = rng.choice([0, 1, 8, 32])
        out, partials = decode(words, min_tokens=least, limit=limit)
        streamed = "".join(p.text for p in partials)
        assert out.text.startswith(streamed), (words, limit, least, streamed, out.text)
        if out.finish_reason == "length" and any(finished(w) or w.endswith(";") for w in words[: limit - 1]):
            # a sentence ended before the limit: after the first sentence only whole ones stream, so the
            # answer can always be trimmed back to its last one
            assert finished(out.text), (words, limit, out.text)
        if out.finish_reason in ("stop", "sentence"):  # the model's own end, or a sentence or clause end
            assert finished(out.text), (words, limit, least, out.text)


def test_answer_applies_the_decoders_policy_to_any_request_the_base_models_too():
    """``Decoder.answer`` (what ``bench quality`` generates with): the same final text as :meth:`decode` for a
    scene's request, and the same policy for a request to the base model."""
    from dataclasses import replace

    rng = random.Random(5)
    vocab = ["word", "слово", "a", "b."]
    for _ in range(100):
        words = [" " + rng.choice(vocab) + rng.choice(["", "", "", ".", "!", "?"]) for _ in range(rng.randint(1, 60))]
        limit, least = rng.randint(1, 60), rng.choice([0, 1, 8, 32])
        decoder = Decoder(WordEngine(words), stream_interval_ms=0, settings=Settings(answer_min_tokens=least))
        sc = scene(params=GenerationParams(max_new_tokens=limit))
        (out,) = decoder.decode([sc], partial=lambda piece: None)  # streamed, every piece: the strictest
        request = decoder.request(sc)
        (gen, text), (base_gen, base_text) = decoder.answer([request, replace(request, adapter=BASE)])
        assert text == base_text == out.text and gen.finish_reason == base_gen.finish_reason == out.finish_reason
    # at the token limit the answer is trimmed to its last complete sentence, the base model's too
    decoder = Decoder(WordEngine(words_of(*SENTENCES)), settings=Settings(answer_min_tokens=0))
    request = replace(decoder.request(scene(params=GenerationParams(max_new_tokens=12))), adapter=BASE)
    ((gen, text),) = decoder.answer([request])
    assert gen.finish_reason == "length" and text == "One two three four. Five six seven eight nine ten."
    assert decoder.answer([]) == []


def test_an_answer_stopped_at_a_sentence_end_never_keeps_the_start_of_a_stop_marker():
    # the step that ends the sentence also begins the model's next block ("<scene ..."): the answer is
    # stopped there, and its final text is the sentence, not the sentence and a stray "<"
    out, partials = decode([" One", " two", " three.\n<", "scene", " register"], min_tokens=1, limit=80)
    assert out.finish_reason == "sentence" and out.text == "One two three."
    assert out.text.startswith("".join(p.text for p in partials))


def test_an_answer_the_model_ends_without_a_sentence_end_is_closed_with_a_full_stop():
    # the model's own end ("stop"): a line without a full stop, or a list ending on ";", gets one; the trailing
    # ";" was never streamed, so the pieces stay a prefix of the final text
    out, partials = decode([" Вода", " дышит", " голосом"], min_tokens=0, limit=80)
    assert out.finish_reason == "stop" and out.text == "Вода дышит голосом."
    out, partials = decode([" one;", " two;"], min_tokens=0, limit=80)
    assert out.text == "one; two." and "".join(p.text for p in partials) == "one"  # the open clause is held
    # cut by the token limit with no sentence to trim back to: left unfinished, never closed
    out, _ = decode([" one", " two", " three", " four"], min_tokens=0, limit=3)
    assert out.finish_reason == "length" and out.text == "one two three"


def test_near_the_token_limit_a_clause_end_stops_the_answer_and_closes_it():
    words = [" w"] * (40 - HOLD_TOKENS) + [" a;", " b", " c;", " d", " e"] + [" w"] * 40
    out, partials = decode(words, min_tokens=8, limit=40)
    assert out.finish_reason == "sentence" and out.text.endswith("w a.")
    assert out.text.startswith("".join(p.text for p in partials))
    # before the last HOLD_TOKENS a clause end is no place to stop
    out, _ = decode([" w", " a;"] + [" w"] * 100, min_tokens=1, limit=80)
    assert out.finish_reason == "length"


def test_after_the_first_sentence_only_whole_sentences_stream_so_the_limit_can_always_trim():
    # the first sentence streams word by word (the first piece goes out at once); the second is held back
    # until it ends, the third (cut by the limit) never streams, and the answer is trimmed to the second
    first, second = " One two three four.", " Five six seven eight nine ten."
    third = " and so on" * 9  # a long sentence the limit cuts, more than HOLD_TOKENS after the first one ends
    words = words_of(first, second, third)
    assert len(words) - 1 - HOLD_TOKENS > 4
    out, partials = decode(words, min_tokens=0, limit=len(words) - 1)
    assert out.finish_reason == "length" and out.text == "One two three four. Five six seven eight nine ten."
    pieces = [p.text for p in partials]
    assert pieces[:4] == ["One", " two", " three", " four."]
    assert pieces[4:] == [" Five six seven eight nine ten."]
    # what bench quality measures (Decoder.answer) is that streamed answer, not a looser one
    decoder = Decoder(WordEngine(words), settings=Settings(answer_min_tokens=0))
    ((gen, text),) = decoder.answer([decoder.request(scene(params=GenerationParams(max_new_tokens=len(words) - 1)))])
    assert text == out.text
    # a first sentence the limit cuts, a list of clauses: after its first clause only whole clauses stream, and
    # the answer is cut back to its last one and closed
    items = words_of(" 1) define the problem;", " 2) count what it costs;", " 3) and then" + " more" * 30)
    out, partials = decode(items, min_tokens=0, limit=len(items) - 5)
    assert out.finish_reason == "length" and out.text == "1) define the problem; 2) count what it costs."
    pieces = [p.text for p in partials]
    assert pieces[:3] == ["1)", " define", " the"] and pieces[3:] == [" problem", "; 2) count what it costs"]
    # a first clause longer than the limit has nothing to trim back to: it stays unfinished, and of it only
    # what came before the last HOLD_TOKENS streamed
    long = [" w"] * (HOLD_TOKENS + 10)
    out, partials = decode(long, min_tokens=0, limit=HOLD_TOKENS + 5)
    assert out.finish_reason == "length" and not finished(out.text)
    assert out.text.startswith("".join(p.text for p in partials))
    assert len("".join(p.text for p in partials).split()) <= 5
