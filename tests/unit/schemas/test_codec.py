import msgpack
import orjson
import pydantic
import pytest

from scenestream.schemas import DeadLetter, RawText, SchemaError, Tokens, decode, encode, to_json
from scenestream.schemas.codec import read_jsonl


def raw(**kw):
    base = dict(message_id="m1", session_id="s1", text="привет мир")
    base.update(kw)
    return RawText(**base)


def test_roundtrip_keeps_every_field_and_version():
    record = raw(tenant="t1", source="ingest")
    back = decode(encode(record), RawText)
    assert back == record
    assert msgpack.unpackb(encode(record))["schema_version"] == RawText.version


def test_unknown_fields_are_ignored():
    data = raw().model_dump()
    data["from_the_future"] = {"x": 1}
    back = decode(msgpack.packb(data), RawText)
    assert back.text == "привет мир"
    assert not hasattr(back, "from_the_future")


def test_missing_required_field_names_it():
    with pytest.raises(SchemaError) as err:
        decode(msgpack.packb({"session_id": "s", "text": "x"}), RawText)
    assert err.value.error_type == "schema"
    assert "message_id" in err.value.reason


def test_not_msgpack_is_undecodable():
    with pytest.raises(SchemaError) as err:
        decode(b"\xc1\xc1 not msgpack", RawText)
    assert err.value.error_type == "undecodable"


def test_invalid_utf8_in_a_string():
    bad = msgpack.packb({"message_id": "m", "session_id": "s", "text": b"\xff\xfe"}, use_bin_type=False)
    with pytest.raises(SchemaError) as err:
        decode(bad, RawText)
    assert err.value.error_type == "invalid_utf8"


def test_binary_text_that_is_utf8_is_accepted():
    value = msgpack.packb({"message_id": "m", "session_id": "s", "text": "тишина".encode()}, use_bin_type=True)
    assert decode(value, RawText).text == "тишина"


def test_json_objects_from_external_producers():
    value = orjson.dumps({"message_id": "m", "session_id": "s", "text": "hello"})
    assert decode(value, RawText).text == "hello"


def test_a_list_is_not_a_record():
    with pytest.raises(SchemaError):
        decode(msgpack.packb([1, 2, 3]), RawText)


def test_records_are_immutable():
    record = raw()
    with pytest.raises(pydantic.ValidationError):
        record.text = "changed"


def test_dead_letter_keeps_original_bytes_and_prints_as_json():
    letter = DeadLetter(
        topic="raw-text",
        partition=1,
        offset=7,
        key=b"s1",
        value=b"\xff\x00",
        stage="tokenizer",
        reason="undecodable",
        error_type="undecodable",
    )
    back = decode(encode(letter), DeadLetter)
    assert back.value == b"\xff\x00" and back.offset == 7
    shown = orjson.loads(to_json(back))
    assert shown["value"] == {"base64": "/wA="} and shown["key"] == "s1"


def test_tokens_piece_text():
    tokens = Tokens(
        message_id="m",
        session_id="s",
        text="a b",
        normalized="a b",
        lang="en",
        pieces=["▁почему", "▁я", "▁не"],
        ids=[1, 2, 3],
        hypertokens=[],
        symbols=[],
        ts_ms=0,
    )
    assert tokens.piece_text == "почему▁я▁не"


def test_read_jsonl_skips_blank_lines_and_names_a_malformed_one(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "шаг"}\n\n{"text": "step"}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"text": "шаг"}, {"text": "step"}]
    path.write_text('{"text": "шаг"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"rows\.jsonl:2: not a JSON line"):
        read_jsonl(path)


@pytest.mark.parametrize(
    "value, error_type, words",
    [
        (b"", "undecodable", "empty"),
        (b"   \n\t  ", "undecodable", "whitespace"),
        (b'"just a string"', "schema", "JSON (a string)"),
        (b"[1, 2, 3]", "schema", "JSON (an array)"),
        (b"42", "schema", "JSON (a number)"),
        (b"hello there, broker", "undecodable", "plain text"),
        ("просто текст".encode(), "undecodable", "plain text"),
        (b'{"message_id": "m", "text": ', "undecodable", "starts like a JSON object"),
        (b"\xc1\xc1\x00\xff binary", "undecodable", "binary"),
        (msgpack.packb([1, 2]), "schema", "msgpack list"),
    ],
)
def test_a_value_that_is_not_a_record_is_named_for_what_it_is(value, error_type, words):
    with pytest.raises(SchemaError) as err:
        decode(value, RawText)
    assert err.value.error_type == error_type
    assert words in err.value.reason


def test_a_record_from_a_newer_schema_is_refused_with_that_reason():
    data = raw().model_dump()
    data["schema_version"] = 99
    with pytest.raises(SchemaError) as err:
        decode(msgpack.packb(data), RawText)
    assert err.value.error_type == "schema_version" and "99" in err.value.reason
    data["schema_version"] = RawText.version  # the reader's own version and older ones are read
    assert decode(msgpack.packb(data), RawText).text == "привет мир"


def test_generation_params_out_of_range_or_unknown_are_refused_with_the_field_named():
    from scenestream.schemas.records import GenerationParams

    good = encode(raw(params=GenerationParams(max_new_tokens=40, temperature=0.7, top_p=0.9, seed=3, stop=("\n",))))
    back = decode(good, RawText)
    assert back.params.max_new_tokens == 40 and back.params.stop == ("\n",) and back.schema_version == RawText.version
    for params, field in (
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 100_000}, "max_new_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logprobs": 3}, "logprobs"),
    ):
        data = {"message_id": "m", "session_id": "s", "text": "x", "params": params}
        with pytest.raises(SchemaError) as refused:
            decode(msgpack.packb(data), RawText)
        assert f"params.{field}" in refused.value.reason, refused.value.reason
