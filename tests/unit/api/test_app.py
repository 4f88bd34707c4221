"""The routes without a pipeline behind them: keys, validation before readiness, 503 until ready, the envelope
on every error, health, metrics and the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from scenestream.api.app import create_app
from scenestream.api.service import Service
from scenestream.settings import Settings

CHAT = {"model": "scenestream", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def client(tmp_path):
    settings = Settings(api_keys="k1=acme,k2=globex", data_dir=tmp_path)
    # the service is never started (no lifespan): the pipeline is "starting" for the whole test
    return TestClient(create_app(settings, service=Service(settings)), raise_server_exceptions=False)


def envelope(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    return body["error"]


def test_keys_are_needed_on_every_v1_route(client):
    for method, path in [
        ("post", "/v1/chat/completions"),
        ("get", "/v1/models"),
        ("post", "/v1/scenes"),
        ("get", "/v1/sessions/s/history"),
        ("get", "/v1/messages/m/trace"),
        ("post", "/v1/sessions/s/replay"),
        ("delete", "/v1/sessions/s"),
    ]:
        assert envelope(getattr(client, method)(path), 401)["code"] == "missing_api_key"
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer k3"})
    assert envelope(wrong, 401)["type"] == "authentication_error"


def test_a_bad_request_is_400_even_before_the_pipeline_is_ready(client):
    headers = {"Authorization": "Bearer k1"}
    err = envelope(client.post("/v1/chat/completions", headers=headers, json={**CHAT, "n": 3}), 400)
    assert err["param"] == "n"
    err = envelope(client.post("/v1/chat/completions", headers=headers, json={"model": "scenestream"}), 400)
    assert err["param"] == "messages"
    err = envelope(client.post("/v1/chat/completions", headers=headers, content=b"{not json"), 400)
    assert err["type"] == "invalid_request_error"
    too_long = {**CHAT, "messages": [{"role": "user", "content": "я" * 20_000}]}
    err = envelope(client.post("/v1/chat/completions", headers=headers, json=too_long), 400)
    assert err["code"] == "text_too_long" and "SCENESTREAM_MAX_TEXT_BYTES" in err["message"]
    assert envelope(client.post("/v1/chat/completions", headers=headers, json={**CHAT, "model": "x"}), 404)


def test_not_ready_is_503_with_retry_after(client):
    response = client.post("/v1/chat/completions", headers={"Authorization": "Bearer k1"}, json=CHAT)
    assert envelope(response, 503)["code"] == "not_ready" and response.headers["Retry-After"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").json() == {"status": "ok"}


def test_unknown_routes_and_methods_answer_in_the_envelope(client):
    assert envelope(client.get("/v2/nothing"), 404)["type"] == "not_found_error"
    assert envelope(client.put("/v1/models", headers={"Authorization": "Bearer k1"}), 405)


def test_metrics_count_requests_by_route_and_status(client):
    client.get("/v1/models")
    text = client.get("/metrics").text
    assert 'scenestream_api_requests_total{route="/v1/models",status="401"} 1.0' in text
    assert "scenestream_api_time_to_first_token_seconds_bucket" in text


def test_the_openapi_document_lists_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/models", "/v1/scenes", "/v1/sessions/{session_id}"} <= set(paths)


def test_serve_refuses_a_public_address_without_keys(monkeypatch):
    from typer.testing import CliRunner

    from scenestream.cli import app
    from scenestream.settings import get_settings

    monkeypatch.delenv("SCENESTREAM_API_KEYS", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "--insecure" in result.output


def test_a_body_over_the_request_limit_is_refused_unread(client):
    response = client.post(
        "/v1/chat/completions", headers={"Authorization": "Bearer k1"}, content=b"x" * (1024 * 1024 + 1)
    )
    assert envelope(response, 413)["code"] == "too_large"
