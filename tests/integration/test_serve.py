"""``scenestream serve`` against the real embedded broker, with the official ``openai`` package as the client.

Two setups:

* ``served``: the real command, ``scenestream serve`` in its own process with no broker set, so it starts the
  embedded broker and every stage itself (transformers engine, short answers, two API keys of two tenants);
* ``gateway``: the API in this process as a gateway only, on the test broker with no stage running, for what
  needs an answer that never comes (504, 429, a client that goes away).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from scenestream.serving import wait_ready
from tests.integration.serving import K1, K2

openai = pytest.importorskip("openai")


def free_port() -> int:
    from scenestream.broker import free_port as port

    return port()


def client(url: str, key: str = K1):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=180)


def stack_settings(data: Path):
    """Settings of the stack serve runs (its broker's address is in its data directory)."""
    from scenestream.broker import reachable
    from scenestream.settings import Settings

    found = reachable(Settings(data_dir=data))
    assert found is not None, "serve did not publish its broker's address"
    return found


def cancels_on(settings, message_id: str, timeout: float = 15.0) -> list:
    """The Cancel records of ``message_id`` on the control topic (waiting up to ``timeout`` for one)."""
    from scenestream.client import read_topic
    from scenestream.schemas.codec import decode
    from scenestream.schemas.records import Cancel
    from scenestream.topics import CONTROL

    async def read():
        found = []
        async for record in read_topic(settings, CONTROL.full_name(settings)):
            item = decode(record.value, Cancel)
            if item.message_id == message_id:
                found.append(item)
        return found

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(read())
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def final_of(settings, message_id: str, timeout: float = 60.0):
    """The final lora-output of ``message_id`` (waiting up to ``timeout`` for it)."""
    from scenestream.client import read_topic
    from scenestream.schemas.codec import decode
    from scenestream.schemas.records import LoraOutput
    from scenestream.topics import LORA_OUTPUTS

    async def read():
        async for record in read_topic(settings, LORA_OUTPUTS.full_name(settings)):
            item = decode(record.value, LoraOutput)
            if item.message_id == message_id and item.final:
                return item
        return None

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(read())
        if found is not None or time.monotonic() > deadline:
            assert found is not None, f"no final lora-output for {message_id} within {timeout:.0f}s"
            return found
        time.sleep(0.5)


SCENE_KEYS = {"message_id", "session", "scene_id", "register", "registers", "linkage", "delta_code", "field"}
SCENE_KEYS |= {"resonance", "echoes", "symbol", "adapter"}


# ----------------------------------------------------------------------------------------------- the whole stack


def test_a_chat_completion_with_its_scene(served):
    url, _ = served
    answer = client(url).chat.completions.create(
        model="scenestream",
        messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": "Почему я не чувствую шаг?"}],
        user="chat-1",
    )
    assert answer.object == "chat.completion" and answer.model == "scenestream"
    assert answer.choices[0].message.content.strip() and answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0
    ext = answer.scenestream
    assert SCENE_KEYS <= set(ext) and ext["session"] == "chat-1"
    assert ext["register"] == ext["registers"][0]["name"]  # chosen by the scene
    assert ext["adapter"] == ext["register"] and ext["delta_code"].startswith("Δ")
    assert abs(sum(r["weight"] for r in ext["registers"]) - 1) < 1e-3


def test_a_stream_has_the_scene_first_then_the_answer_and_usage(served):
    url, _ = served
    stream = client(url).chat.completions.create(
        model="logician",
        messages=[{"role": "user", "content": "How many minutes are in a day?"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=6,
    )
    chunks = list(stream)
    first = chunks[0]
    assert first.object == "chat.completion.chunk" and first.choices[0].delta.role == "assistant"
    assert not first.choices[0].delta.content  # the scene comes before the first token
    ext = first.scenestream
    assert SCENE_KEYS <= set(ext) and ext["register"] == "logician" and ext["adapter"] == "logician"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 6
    assert len({c.id for c in chunks}) == 1


def test_errors_come_in_the_openai_envelope(served):
    url, _ = served
    good = [{"role": "user", "content": "hello"}]
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong-key").chat.completions.create(model="scenestream", messages=good)
    with pytest.raises(openai.NotFoundError) as caught:
        client(url).chat.completions.create(model="gpt-9", messages=good)
    assert caught.value.body["code"] == "model_not_found"
    tools = [{"type": "function", "function": {"name": "f"}}]
    for extra, param in (({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"tools": tools}, "tools")):
        with pytest.raises(openai.BadRequestError) as caught:
            client(url).chat.completions.create(model="scenestream", messages=good, **extra)
        assert caught.value.body["param"] == param
    for text in ("   ", "я" * 20_000):
        with pytest.raises(openai.BadRequestError):
            client(url).chat.completions.create(model="scenestream", messages=[{"role": "user", "content": text}])
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).chat.completions.create(model="scenestream", messages=image)
    assert caught.value.body["param"] == "messages.0.content.0.type"


def test_models_list_the_adapters_with_the_base_model_as_parent(served):
    url, _ = served
    models = {m.id: m for m in client(url).models.list()}
    assert set(models) == {"scenestream", "poet", "logician", "body", "philosopher"}
    base = models["scenestream"].root
    assert base and all(models[r].parent == base for r in ("poet", "logician", "body", "philosopher"))
    from scenestream.schemas.registers import catalogue

    for name in ("poet", "logician", "body", "philosopher"):  # the adapter version each one serves, loaded here
        about = models[name].model_extra["scenestream"]
        assert about["adapter_version"] == catalogue()[name].adapter_version() == about["served_version"]
        assert about["loaded"] is True and about["symbol"] == catalogue()[name].symbol


def test_tenants_never_see_each_other(served):
    url, _ = served
    text = "Тишина перед входом дрожит во мне."
    one = client(url, K1).chat.completions.create(
        model="scenestream", messages=[{"role": "user", "content": text}], user="shared"
    )
    two = client(url, K2).chat.completions.create(
        model="scenestream", messages=[{"role": "user", "content": text}], user="shared"
    )
    # the same text in the same session name: across tenants memory recalls nothing
    assert two.scenestream["echoes"] == [] and two.scenestream["resonance"] == 0
    h1 = httpx.get(f"{url}/v1/sessions/shared/history", headers={"Authorization": f"Bearer {K1}"}).json()["data"]
    h2 = httpx.get(f"{url}/v1/sessions/shared/history", headers={"Authorization": f"Bearer {K2}"}).json()["data"]
    assert [r["message_id"] for r in h1] == [one.scenestream["message_id"]]
    assert [r["message_id"] for r in h2] == [two.scenestream["message_id"]]
    mid = one.scenestream["message_id"]
    assert httpx.get(f"{url}/v1/messages/{mid}/trace", headers={"Authorization": f"Bearer {K2}"}).status_code == 404
    trace = httpx.get(f"{url}/v1/messages/{mid}/trace", headers={"Authorization": f"Bearer {K1}"}).json()
    assert trace["archive"]["message_id"] == mid and {"raw-text", "tokens", "scenes", "lora-outputs"} <= set(
        trace["topics"]
    )
    erased = httpx.delete(f"{url}/v1/sessions/shared", headers={"Authorization": f"Bearer {K2}"}).json()
    assert erased["erased"]["scenes"] == 1
    assert (
        httpx.get(f"{url}/v1/sessions/shared/history", headers={"Authorization": f"Bearer {K2}"}).json()["data"] == []
    )
    still = httpx.get(f"{url}/v1/sessions/shared/history", headers={"Authorization": f"Bearer {K1}"}).json()["data"]
    assert [r["message_id"] for r in still] == [mid]


def test_a_session_remembers_and_replays(served):
    url, _ = served
    auth = {"Authorization": f"Bearer {K1}"}
    for _ in range(2):
        last = client(url).chat.completions.create(
            model="scenestream",
            messages=[{"role": "user", "content": "Дыхание замедляется, плечи тяжелеют."}],
            extra_headers={"X-Session-Id": "remember-1"},
        )
    assert last.scenestream["resonance"] > 0 and last.scenestream["echoes"]  # the second recalls the first
    replayed = httpx.post(
        f"{url}/v1/sessions/remember-1/replay", headers=auth, json={"register": "poet", "limit": 1}, timeout=120
    )
    assert replayed.status_code == 200, replayed.text
    row = replayed.json()["data"][0]
    assert row["new"]["register"] == "poet" and row["new"]["text"] and row["text"].startswith("Дыхание")
    scenes = httpx.post(f"{url}/v1/scenes", headers=auth, json={"texts": ["one", "two"]}).json()["data"]
    assert [s["text"] for s in scenes] == ["one", "two"] and all(s["delta_code"].startswith("Δ") for s in scenes)


def test_the_websocket_answers_and_cancels(served):
    from websockets.sync.client import connect

    url, data = served
    events = []
    with connect(url.replace("http", "ws") + "/v1/ws", additional_headers={"Authorization": f"Bearer {K1}"}) as ws:
        ws.send(json.dumps({"text": "Почему я не чувствую шаг?", "register": "body", "session": "ws-1"}))
        while not events or events[-1]["type"] not in ("final", "error"):
            events.append(json.loads(ws.recv(timeout=120)))
        kinds = [e["type"] for e in events]
        assert kinds[:2] == ["accepted", "scene"] and kinds[-1] == "final", kinds
        assert events[1]["register"] == "body" and events[1]["adapter"] == "body"
        final = events[-1]
        pieces = "".join(e["text"] for e in events if e["type"] == "delta")
        assert final["text"].startswith(pieces) and final["text"].strip()

        ws.send(json.dumps({"text": "A long question to be cancelled at once", "max_tokens": 40}))
        accepted = json.loads(ws.recv(timeout=30))
        assert accepted["type"] == "accepted"
        ws.send(json.dumps({"type": "cancel", "message_id": accepted["message_id"]}))
        seen = []
        while not seen or seen[-1]["type"] != "error":
            seen.append(json.loads(ws.recv(timeout=30)))
        assert seen[-1]["error"]["code"] == "cancelled" and seen[-1]["message_id"] == accepted["message_id"]
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10))["error"]["code"] == "invalid_json"
    cancels = cancels_on(stack_settings(data), accepted["message_id"])
    assert cancels and cancels[0].tenant == "acme"
    # the decoder obeys it: the message ends with a final record marked cancelled, well short of 40 tokens
    ended = final_of(stack_settings(data), accepted["message_id"])
    assert ended.cancelled and ended.finish_reason == "cancelled" and ended.completion_tokens < 40


def hang_up_after_the_scene(url: str) -> str:
    """A streamed request whose client goes away after the first chunk (the scene); its message id."""
    body = {"model": "philosopher", "stream": True, "max_tokens": 60}
    body["messages"] = [{"role": "user", "content": "Что такое время?"}]
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {K1}"}, json=body, timeout=60
    ) as response:
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
    return json.loads(first[6:])["scenestream"]["message_id"]


def test_a_stream_closed_after_its_scene_is_cancelled(served):
    url, data = served
    mid = hang_up_after_the_scene(url)
    cancels = cancels_on(stack_settings(data), mid)
    assert cancels and cancels[0].reason == "client went away" and cancels[0].tenant == "acme"


def test_a_stream_closed_after_its_scene_stops_the_decoder(served):
    url, data = served
    mid = hang_up_after_the_scene(url)
    ended = final_of(stack_settings(data), mid)
    assert ended.cancelled and ended.completion_tokens < 60


def test_a_websocket_without_a_key_is_refused(served):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url, _ = served
    with pytest.raises(InvalidStatus):
        with connect(url.replace("http", "ws") + "/v1/ws"):
            pass


def test_health_readiness_and_metrics(served):
    url, _ = served
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["ready"] and ready["mode"] == "embedded" and all(ready["stages"].values())
    text = httpx.get(f"{url}/metrics").text
    assert 'scenestream_api_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert "scenestream_api_time_to_first_token_seconds_count" in text
    assert 'scenestream_stage_records_handled_total{stage="decode_scene"}' in text
    assert 'scenestream_stage_batch_seconds_count{stage="decode_scene"}' in text
    assert 'scenestream_stage_step_seconds_count{step="generate"}' in text


# ----------------------------------------------------------------------------------------------- a gateway only


@contextlib.contextmanager
def serving(app, workers: bool = True):
    """``app`` on a free port, once ready; without ``workers`` (a gateway whose stages nobody runs), once its
    gateway is up (its /readyz says 503 for want of workers)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", log_level="warning", ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        if workers:
            wait_ready(url, 60)
        else:  # once its gateway is up (with nobody to answer, its /readyz says 503, by design)
            wait_ready(url, 60, ready=lambda response: bool(response.json().get("gateway")))
        yield url
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def gateway(settings_factory):
    """The API in this process, a gateway only (a broker is set), with no stage running: nothing answers."""
    from scenestream.api.app import create_app

    settings = settings_factory(api_timeout_s=1.5, api_max_pending=2, api_retry_after_s=3)
    with serving(create_app(settings), workers=False) as url:
        yield url, settings


CHAT = {"model": "scenestream", "messages": [{"role": "user", "content": "nobody answers this"}]}


def test_a_gateway_only_times_out_with_504_and_in_a_stream_with_an_error_event(gateway):
    url, settings = gateway
    response = httpx.get(f"{url}/readyz")
    ready = response.json()
    assert ready["mode"] == "cluster" and ready["broker"] and ready["gateway"]
    # no worker runs the stages: not ready, and it says what lacks (no heartbeat holds any source partition)
    assert response.status_code == 503 and not ready["ready"] and ready["workers"] == 0 and not ready["engine"]
    assert set(ready["unheld_partitions"]) == {"tokenize_raw_text", "build_scene_from_tokens", "decode_scene"} | (
        {"remember_scene", "link_answer"} if settings.memory else set()
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client(url, "any").chat.completions.create(**CHAT)
    assert caught.value.status_code == 504 and caught.value.body["code"] == "timeout"
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(lines[-1][6:])["error"]["code"] == "timeout"
    # the timed-out message is cancelled too, so the decoder does not go on generating it
    assert cancels_on(settings, response.headers.get("x-session-id", "").removeprefix("s-"))


def test_over_max_pending_is_429_with_retry_after(gateway):
    url, _ = gateway

    async def burst():
        async with httpx.AsyncClient(timeout=30) as http:
            return await asyncio.gather(*[http.post(f"{url}/v1/chat/completions", json=CHAT) for _ in range(4)])

    codes = sorted(r.status_code for r in asyncio.run(burst()))
    assert codes == [429, 429, 504, 504]
    refused = [r for r in asyncio.run(burst()) if r.status_code == 429][0]
    assert refused.headers["Retry-After"] == "3" and refused.json()["error"]["type"] == "rate_limit_error"


def test_a_dead_letter_ends_the_request_with_its_reason(settings_factory):
    """A stage that refuses a message (its dead letter on a .dlq topic) ends the waiting request: 422 with the
    stage's reason. The dead letter is produced here, as a stage would, on the real broker."""
    from concurrent.futures import ThreadPoolExecutor

    from scenestream.api.app import create_app
    from scenestream.backbone import start_producer
    from scenestream.client import read_topic
    from scenestream.schemas.codec import decode, encode
    from scenestream.schemas.records import DeadLetter, RawText
    from scenestream.topics import RAW_TEXT

    settings = settings_factory(api_timeout_s=30)

    async def refuse(session: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            async for record in read_topic(settings, RAW_TEXT.full_name(settings)):
                raw = decode(record.value, RawText)
                if raw.session_id == session:
                    dead = DeadLetter(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        value=record.value,
                        stage="tokenizer",
                        reason="the test refuses it",
                        error_type="InputError",
                        message_id=raw.message_id,
                    )
                    producer = await start_producer(settings)
                    try:
                        await (await producer.send(RAW_TEXT.dlq_name(settings), value=encode(dead)))
                    finally:
                        await producer.stop()
                    return
        raise AssertionError(f"no raw text of session {session}")

    with serving(create_app(settings), workers=False) as url, ThreadPoolExecutor(1) as pool:
        asked = pool.submit(httpx.post, f"{url}/v1/chat/completions", json={**CHAT, "user": "refused-1"}, timeout=60)
        asyncio.run(refuse("refused-1"))
        response = asked.result()
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (
        error["code"] == "refused_by_pipeline" and "tokenizer" in error["message"] and "refuses it" in error["message"]
    )


def test_a_client_that_goes_away_cancels_its_message(gateway):
    url, settings = gateway
    slow = {**CHAT, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=slow, timeout=30) as response:
        assert response.status_code == 200
        session = response.headers["x-session-id"]
    # closed before any answer: the message (its id is in the session's default name) is cancelled
    cancels = cancels_on(settings, session.removeprefix("s-"))
    assert cancels and cancels[0].reason == "client went away"

    def hang_up():
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "user": "gone-1"}, timeout=0.5)

    hang_up()  # a non-streamed request whose client stops waiting
    from scenestream.client import read_topic
    from scenestream.schemas.codec import decode
    from scenestream.schemas.records import Cancel
    from scenestream.topics import CONTROL

    async def reasons():
        return [decode(r.value, Cancel).reason async for r in read_topic(settings, CONTROL.full_name(settings))]

    deadline = time.monotonic() + 10
    seen = asyncio.run(reasons())
    while seen.count("client went away") < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
        seen = asyncio.run(reasons())
    assert seen.count("client went away") == 2, seen  # not "timeout": the disconnect was seen first


def test_a_second_gateway_on_the_same_stack_gets_its_own_answers(served, tmp_path):
    """Several serve processes share one cluster: a gateway-only API on the served stack's broker, asked at the
    same time as the served one; each gets its own answer (its reader keeps only its own requests' records)."""
    from concurrent.futures import ThreadPoolExecutor

    from scenestream.api.app import create_app
    from scenestream.settings import Settings

    url, data = served
    broker = stack_settings(data).broker
    with serving(create_app(Settings(broker=broker, data_dir=tmp_path, api_keys=f"{K1}=acme"))) as second:
        # ready: the served stack's worker, heard through its heartbeats, holds every stage's partitions
        ready = httpx.get(f"{second}/readyz").json()
        assert ready["mode"] == "cluster" and ready["ready"] and ready["workers"] >= 1 and ready["engine"]
        assert all(ready["stages"].values()) and "decode_scene" in ready["stages"]

        def ask(base: str, model: str):
            return client(base).chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"Скажи что-нибудь, {model}."}], max_tokens=6
            )

        with ThreadPoolExecutor(2) as pool:
            one, two = pool.submit(ask, url, "body"), pool.submit(ask, second, "poet")
            one, two = one.result(timeout=200), two.result(timeout=200)
    assert one.scenestream["register"] == "body" and two.scenestream["register"] == "poet"
    assert one.scenestream["message_id"] != two.scenestream["message_id"]
    assert one.choices[0].message.content and two.choices[0].message.content


# ----------------------------------------------------------------------------------------------- fuzz


def test_a_fuzz_of_the_openapi_schema_finds_no_server_error(served):
    """schemathesis generates requests from the app's own OpenAPI document (valid and not) for every route; no
    response may be a 5xx. ``model`` is free text in the schema, so generated chats are nearly all refused
    before they reach the pipeline; the tests above answer the valid ones."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    url, _ = served
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"Authorization": f"Bearer {K1}"}
    failures = []
    statuses: dict[int, int] = {}
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/chat/completions",
        "GET /v1/models",
        "POST /v1/scenes",
        "GET /v1/sessions/{session_id}/history",
        "GET /v1/messages/{message_id}/trace",
        "POST /v1/sessions/{session_id}/replay",
        "DELETE /v1/sessions/{session_id}",
    }

    def fuzz(operation, mode) -> None:
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call(headers=headers, timeout=60)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

        try:
            run()
        except Unsatisfiable:  # nothing of the operation can be made invalid (GET /v1/models has no input)
            assert mode == GenerationMode.NEGATIVE

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    assert failures == []
    print("fuzz statuses:", dict(sorted(statuses.items())))
    # the fuzz reached the routes (not only the key check): answers and refusals both
    assert sum(statuses.values()) > 100 and statuses.get(200) and statuses.get(400), statuses
    assert not statuses.get(401), statuses


def test_a_gateway_whose_broker_is_gone_is_not_ready(tmp_path):
    from scenestream.api.app import create_app
    from scenestream.broker import EmbeddedBroker
    from scenestream.settings import Settings

    with EmbeddedBroker() as broker:
        settings = Settings(broker=broker.url, topic_prefix="gone-", data_dir=tmp_path)
        with serving(create_app(settings), workers=False) as url:
            assert httpx.get(f"{url}/readyz").json()["broker"] is True
            broker.stop()
            response = httpx.get(f"{url}/readyz", timeout=10)
            assert response.status_code == 503 and response.json()["broker"] is False
            started = time.monotonic()
            refused = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=30)
            assert time.monotonic() - started < 10
            assert refused.status_code == 503 and refused.json()["error"]["code"] in ("not_ready", "broker_unavailable")
