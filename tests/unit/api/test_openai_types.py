"""The OpenAI chat request checked field by field, the responses and stream chunks built, the error envelope."""

from __future__ import annotations

import pytest

from scenestream.api.openai_types import (
    APIError,
    check_request,
    chunk,
    completion,
    error_body,
    extension,
    finish_reason,
    parse_request,
    usage,
)
from scenestream.schemas.records import REGISTERS, GenerationParams, LoraOutput, RegisterWeight, Scene, SceneField


def ask(session_header=None, **fields):
    body = {"model": "scenestream", "messages": [{"role": "user", "content": "Почему я не чувствую шаг?"}], **fields}
    return check_request(parse_request(body), REGISTERS, session_header)


def refused(status=400, **fields) -> APIError:
    with pytest.raises(APIError) as caught:
        ask(**fields)
    assert caught.value.status == status
    return caught.value


def test_a_plain_request_asks_for_the_last_user_text_and_nothing_else():
    asked = ask(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "part"}]},
        ]
    )
    assert asked.text == "second\npart" and asked.register is None and asked.session is None
    assert not asked.stream and not asked.include_usage
    assert asked.params == GenerationParams()


def test_sampling_fields_become_generation_params():
    asked = ask(max_tokens=40, temperature=0.7, top_p=0.9, seed=3, stop=["\n\n", "END"], stream=True)
    assert asked.params == GenerationParams(max_new_tokens=40, temperature=0.7, top_p=0.9, seed=3, stop=("\n\n", "END"))
    assert ask(max_completion_tokens=12).params.max_new_tokens == 12
    assert ask(stop="END").params.stop == ("END",)
    assert ask(stream=True, stream_options={"include_usage": True}).include_usage


def test_a_register_model_forces_the_register_and_an_unknown_model_is_404():
    assert ask(model="poet").register == "poet"
    err = refused(404, model="gpt-4o")
    assert err.code == "model_not_found" and err.param == "model" and "gpt-4o" in err.message


def test_the_session_comes_from_user_then_the_header():
    assert ask(session_header="h-1").session == "h-1"
    assert ask(session_header="h-1", user="u-1").session == "u-1"
    assert refused(user="\x00bad").param == "user"
    with pytest.raises(APIError):
        ask(session_header="x" * 300)


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"shiny_new_field": 1}, "shiny_new_field"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"max_completion_tokens": 600}, "max_completion_tokens"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens"),
        ({"temperature": 3.0}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "only me"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "   \n"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
            "messages.0.content.0.type",
        ),
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]}, "messages.0.tool_calls"),
        ({"messages": "hello"}, "messages"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": "0.5"}, "top_p"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_what_scenestream_cannot_honour_is_a_400_naming_the_field(fields, param):
    err = refused(**fields)
    assert err.param == param, err.message
    assert err.body()["error"]["type"] == "invalid_request_error"


def test_harmless_defaults_of_unsupported_fields_pass():
    asked = ask(n=1, logprobs=False, tools=[], frequency_penalty=0, presence_penalty=0.0, store=False, metadata={})
    assert asked.text
    assert refused(n=True).param == "n"  # a bool is not 1


def test_the_error_envelope():
    assert error_body("m", "t", "c", "p") == {"error": {"message": "m", "type": "t", "code": "c", "param": "p"}}
    err = APIError(429, "busy", code="too_many_pending", headers={"Retry-After": "1"})
    assert err.body()["error"]["type"] == "rate_limit_error" and err.headers == {"Retry-After": "1"}
    assert APIError(401, "x").type == "authentication_error"
    assert APIError(504, "x").type == "timeout"
    assert APIError(503, "x").type == "service_unavailable"


def scene(**kw) -> Scene:
    values = dict(
        scene_id="sc-1",
        message_id="m-1",
        session_id="s-1",
        stage="resonated",
        text="t",
        lang="en",
        hypertokens=[],
        linkage="a·b·c",
        delta_code="Δ7",
        field=SceneField(valence=0.1, arousal=0.2, tension=0.3, rhythm="measured"),
        registers=[RegisterWeight(name="poet", weight=0.7), RegisterWeight(name="body", weight=0.3)],
        register="poet",
        resonance=0.5,
        echoes=[{"scene_id": "old", "score": 0.9}],
        symbol="🪶",
        ts_ms=1,
    )
    values.update(kw)
    return Scene(**values)


def output(**kw) -> LoraOutput:
    values = dict(
        message_id="m-1",
        session_id="s-1",
        scene_id="sc-1",
        text="the whole answer",
        register="poet",
        adapter="poet",
        engine="transformers",
        model="gemma-3-270m",
        delta_code="Δ7",
        prompt_tokens=30,
        completion_tokens=5,
        finish_reason="stop",
    )
    values.update(kw)
    return LoraOutput(**values)


def test_the_extension_carries_the_scene_and_its_adapter():
    ext = extension("m-1", "s-1", scene(force_register="body"), adapter="body")
    assert ext["register"] == "body"  # the forced register answers
    assert ext["registers"] == [{"name": "poet", "weight": 0.7}, {"name": "body", "weight": 0.3}]
    assert {k: ext[k] for k in ("linkage", "delta_code", "resonance", "symbol", "adapter")} == {
        "linkage": "a·b·c",
        "delta_code": "Δ7",
        "resonance": 0.5,
        "symbol": "🪶",
        "adapter": "body",
    }
    assert ext["field"]["rhythm"] == "measured" and ext["echoes"] == [{"scene_id": "old", "score": 0.9}]
    assert extension("m-1", "s-1", None, output=output(adapter="base"))["adapter"] == "base"


def test_finish_reasons_map_to_openai():
    assert finish_reason(output(finish_reason="length")) == "length"
    for reason in ("stop", "sentence", None):
        assert finish_reason(output(finish_reason=reason)) == "stop"


def test_a_completion_and_its_chunks():
    out = output()
    doc = completion("scenestream", "m-1", out, {"message_id": "m-1"}, created=5)
    assert doc["object"] == "chat.completion" and doc["id"] == "chatcmpl-m-1" and doc["created"] == 5
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": "the whole answer", "refusal": None}
    assert doc["usage"] == {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35} == usage(out)
    assert doc["scenestream"] == {"message_id": "m-1"}

    first = chunk("poet", "m-1", 5, delta={"role": "assistant", "content": ""}, ext={"x": 1}, include_usage=True)
    assert first["object"] == "chat.completion.chunk" and first["scenestream"] == {"x": 1}
    assert first["usage"] is None and first["choices"][0]["finish_reason"] is None
    plain = chunk("poet", "m-1", 5, delta={"content": "a"})
    assert "usage" not in plain and "scenestream" not in plain
    last = chunk("poet", "m-1", 5, usage_of=usage(out), choices=False)
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 35
