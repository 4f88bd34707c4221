"""The tokenizer stage end to end through the real broker, and its dead letters."""

import asyncio

import msgpack

from scenestream.client import Watcher, publish, raw_text, read_topic
from scenestream.runtime import running_worker, select_stages
from scenestream.schemas import DeadLetter, Tokens, decode, encode
from scenestream.topics import RAW_TEXT, TOKENS


async def _send_raw_to(settings, topic, values):
    from scenestream.backbone import producer

    prod = producer(settings)
    await prod.start()
    try:
        futures = [await prod.send(topic, key=b"s-bad", value=v) for v in values]
        await asyncio.gather(*futures)
    finally:
        await prod.stop()


async def _send_raw(settings, values):
    await _send_raw_to(settings, RAW_TEXT.full_name(settings), values)


async def _collect(settings, topic, n, timeout=20.0):
    got = []

    async def scan():
        async for record in read_topic(settings, topic, follow=True):
            got.append(record)
            if len(got) >= n:
                return

    await asyncio.wait_for(scan(), timeout)
    return got


def test_text_in_raw_text_comes_out_on_tokens(settings_factory):
    s = settings_factory()

    async def go():
        async with running_worker(s, select_stages(["tokenizer"])):
            watcher = Watcher(s, {TOKENS.full_name(s): Tokens}, [RAW_TEXT.dlq_name(s)])
            await watcher.start()
            record = raw_text("Почему я не чувствую шаг в себе? 🫁", session_id="sess-1")
            await publish(s, [record])
            tokens = (await watcher.wait(record.message_id, TOKENS.full_name(s), timeout=20))["tokens"]
            await watcher.stop()
            return record, tokens

    record, tokens = asyncio.run(go())
    assert tokens.message_id == record.message_id and tokens.session_id == "sess-1"
    assert {"чувствую", "шаг"} <= {h.text for h in tokens.hypertokens}
    assert tokens.symbols == ["🫁"] and tokens.lang == "ru"


def test_bad_input_goes_to_the_dlq_and_the_stage_goes_on(settings_factory):
    s = settings_factory(max_text_bytes=64)
    bad = {
        "empty_text": encode(raw_text("")),
        "whitespace": encode(raw_text("  \n\t ")),
        "too_long": encode(raw_text("очень длинный текст " * 10)),
        "invalid_utf8": msgpack.packb({"message_id": "m", "session_id": "s", "text": b"\xff\xfe"}, use_bin_type=False),
        "undecodable": b"\xc1\xc1\x00 definitely not a record",
        "schema": msgpack.packb({"session_id": "s", "text": "no message id"}),
    }
    expected_types = {
        "empty_text": "empty_text",
        "whitespace": "empty_text",
        "too_long": "too_long",
        "invalid_utf8": "invalid_utf8",
        "undecodable": "undecodable",
        "schema": "schema",
    }

    async def go():
        async with running_worker(s, select_stages(["tokenizer"])):
            await _send_raw(s, list(bad.values()))
            good = raw_text("after the bad ones", session_id="s-bad")
            await publish(s, [good])
            letters = await _collect(s, RAW_TEXT.dlq_name(s), len(bad))
            tokens = await _collect(s, TOKENS.full_name(s), 1)
            return good, letters, tokens

    good, letters, tokens = asyncio.run(go())
    decoded = [decode(r.value, DeadLetter) for r in letters]
    assert [d.error_type for d in decoded] == list(expected_types.values())
    for letter, original in zip(decoded, bad.values()):
        assert letter.value == original and letter.stage == "tokenizer" and letter.key == b"s-bad"
        assert letter.topic == RAW_TEXT.full_name(s) and letter.reason
    assert len({d.offset for d in decoded}) == len(bad)  # the source offset of each
    assert decode(tokens[0].value, Tokens).message_id == good.message_id


def test_tokens_become_scenes_through_the_broker(settings_factory):
    from scenestream.schemas import Scene
    from scenestream.topics import SCENES
    from scenestream.topics import TOKENS as TOKENS_TOPIC

    s = settings_factory()
    texts = ["Почему я не чувствую шаг в себе?", "If x > 3 and y = 2x, is y > 6?", "Тихий дождь шепчет по крыше"]

    async def go():
        async with running_worker(s, select_stages(["tokenizer", "scene"])):
            watcher = Watcher(s, {SCENES.full_name(s): Scene}, [RAW_TEXT.dlq_name(s), TOKENS_TOPIC.dlq_name(s)])
            await watcher.start()
            records = [raw_text(t, session_id="scene-session") for t in texts]
            await publish(s, records)
            out = [(await watcher.wait(r.message_id, SCENES.full_name(s), timeout=30))["scene"] for r in records]
            await watcher.stop()
            # a tokens record that is not valid for the scene stage goes to tokens.dlq
            await _send_raw_to(s, TOKENS_TOPIC.full_name(s), [msgpack.packb({"message_id": "x", "text": "no pieces"})])
            letters = await _collect(s, TOKENS_TOPIC.dlq_name(s), 1)
            return records, out, letters

    records, out, letters = asyncio.run(go())
    assert [s.message_id for s in out] == [r.message_id for r in records]
    assert out[0].lang == "ru" and {r.name for r in out[0].registers[:2]} == {"body", "philosopher"}
    assert out[1].register == "logician" and out[2].register == "poet"
    assert all(s.stage == "formed" and s.session_id == "scene-session" for s in out)
    letter = decode(letters[0].value, DeadLetter)
    assert letter.stage == "scene" and letter.error_type == "schema"


def test_a_result_over_the_size_limit_is_dead_lettered_and_the_stage_goes_on(settings_factory):
    """A tokens record is several times its text: with a 4 KiB producer limit, a 2 KiB text's result cannot
    be sent. The input goes to the dead-letter topic whole (it fits), and the next text goes through."""
    s = settings_factory(max_request_bytes=4096)
    big = raw_text("слово " * 180, session_id="s-big")  # ≈ 2 KiB of UTF-8

    async def go():
        async with running_worker(s, select_stages(["tokenizer"])):
            await publish(s, [big])
            after = raw_text("a small one after it", session_id="s-big")
            await publish(s, [after])
            letters = await _collect(s, RAW_TEXT.dlq_name(s), 1)
            tokens = await _collect(s, TOKENS.full_name(s), 1)
            return after, letters, tokens

    after, letters, tokens = asyncio.run(go())
    letter = decode(letters[0].value, DeadLetter)
    assert letter.error_type == "undeliverable" and "MessageSizeTooLargeError" in letter.reason
    assert not letter.truncated and decode(letter.value, type(big)).message_id == big.message_id
    assert [decode(t.value, Tokens).message_id for t in tokens] == [after.message_id]


def test_when_not_even_a_truncated_dead_letter_can_be_sent_the_worker_stops_loudly(settings_factory):
    """A limit below a truncated dead letter's size: the stage stops (nothing acked, nothing sent) instead of
    retrying forever or dropping the message."""
    s = settings_factory(max_request_bytes=512)

    async def go():
        async with running_worker(s, select_stages(["tokenizer"])) as (_app, runners):
            client = s.model_copy(update={"max_request_bytes": 1 << 20})  # the producer that ingests has room
            await publish(client, [raw_text("слово " * 120, session_id="s-stop")])
            for _ in range(200):
                if runners[0].stopped is not None:
                    break
                await asyncio.sleep(0.1)
            return (
                runners[0].stopped,
                await _collect_all(s, RAW_TEXT.dlq_name(s)),
                await _collect_all(s, TOKENS.full_name(s)),
            )

    stopped, letters, tokens = asyncio.run(go())
    assert stopped is not None and "even truncated" in str(stopped)
    assert letters == [] and tokens == []


async def _collect_all(settings, topic):
    return [record async for record in read_topic(settings, topic)]


def test_the_offline_scene_path_gives_the_scenes_the_stages_give_over_the_broker(settings_factory):
    from scenestream.offline import scenes_for
    from scenestream.schemas import Scene
    from scenestream.topics import SCENES

    s = settings_factory(scene_embedder="static")  # a setting the offline path must honour like the stages
    records = [
        raw_text(text, session_id="s-offline")
        for text in ("Почему я не чувствую шаг в себе?", "How many minutes are in a day?", "Море шумит 🫁")
    ]

    async def go():
        async with running_worker(s, select_stages(["tokenizer", "scene"])):
            await publish(s, records)
            return await _collect(s, SCENES.full_name(s), len(records), timeout=60)

    over_the_broker = {scene.message_id: scene for scene in (decode(r.value, Scene) for r in asyncio.run(go()))}
    offline = scenes_for(records, s)
    assert [scene.model_dump(exclude={"timings_ms"}) for scene in offline] == [
        over_the_broker[r.message_id].model_dump(exclude={"timings_ms"}) for r in records
    ]
