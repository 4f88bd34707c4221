"""The output routes (scenestream/api/views.py) over a real scene archive (Qdrant Edge in a temporary folder)
holding one known scene and its answer, with no pipeline; and the web view's static files."""

from __future__ import annotations

import io
import wave
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from fastapi.testclient import TestClient

from scenestream.api.app import create_app
from scenestream.api.service import Service
from scenestream.settings import Settings
from tests.unit.outputs.conftest import build_scene

ACME = {"Authorization": "Bearer k1"}
GLOBEX = {"Authorization": "Bearer k2"}
ANSWER = "Тишина отвечает тихой дрожью."


@pytest.fixture
def archived(tmp_path):
    """(client, scene): the app with keys of tenants acme and globex; acme's scene of message m-1 archived with
    its answer, as the memory stage stores and links it."""
    from scenestream.agents.memory.archive import open_archive
    from scenestream.agents.scene.transform import SceneModel, scene_id_for

    settings = Settings(api_keys="k1=acme,k2=globex", data_dir=tmp_path, scene_embedder="static")
    scene_id = scene_id_for("m-1", SceneModel.load("static").version)  # as the scene builder names it
    scene = build_scene(scene_id=scene_id, message_id="m-1", tenant="acme")
    archive = open_archive(tmp_path, None)
    try:
        vector = np.zeros((1, 384), dtype=np.float32)
        vector[0, 0] = 1.0
        archive.store([scene], vector)
        archive.update_payload(scene_id, {"answer": ANSWER, "answer_register": "philosopher"})
    finally:
        archive.close()
    client = TestClient(create_app(settings, service=Service(settings)), raise_server_exceptions=False)
    return client, scene


def test_the_image_is_the_scenes_svg_and_png(archived):
    from scenestream.outputs.image import scene_svg

    client, scene = archived
    svg = client.get(f"/v1/scenes/{scene.scene_id}/image.svg", headers=ACME)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml; charset=utf-8"
    assert svg.text == scene_svg(scene)  # the stored scene drawn, byte for byte
    root = ET.fromstring(svg.text)
    delta = [e.text for e in root.iter() if e.get("class") == "delta"]
    assert delta == ["Δ41"]
    assert "sandbox" in svg.headers["content-security-policy"] and svg.headers["cache-control"] == "no-store"
    png = client.get(f"/v1/scenes/{scene.scene_id}/image.png?scale=0.5", headers=ACME)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png.content[16:20], "big") == 380  # 760 SVG units at half scale


def test_the_voice_speaks_the_archived_answer(archived):
    import soundfile

    client, _ = archived
    wav = client.get("/v1/messages/m-1/voice.wav", headers=ACME)
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.content)) as read:
        assert (read.getnchannels(), read.getsampwidth(), read.getframerate()) == (1, 2, 22050)
        seconds = read.getnframes() / read.getframerate()
    assert 0.8 < seconds < 6.0  # four Russian words
    ogg = client.get("/v1/messages/m-1/voice.ogg", headers=ACME)
    assert ogg.status_code == 200 and ogg.headers["content-type"] == "audio/ogg"
    info = soundfile.info(io.BytesIO(ogg.content))
    assert (info.format, info.subtype) == ("OGG", "VORBIS") and info.duration == pytest.approx(seconds, abs=0.05)


def test_the_formula_parses_back_into_the_scenes_parts(archived):
    client, scene = archived
    doc = client.get("/v1/messages/m-1/formula", headers=ACME).json()
    assert doc["formula"] == "Δ41 = дрожь ⊗ тишина → вход | philosopher 0.55 + body 0.42 | ρ 0.85 🫁"
    assert doc["scene_id"] == scene.scene_id
    assert doc["parts"] == {
        "delta_code": "Δ41",
        "concepts": ["дрожь", "тишина", "вход"],
        "registers": [{"name": "philosopher", "weight": 0.55}, {"name": "body", "weight": 0.42}],
        "resonance": 0.85,
        "symbol": "🫁",
    }


def test_another_tenant_gets_404_like_a_scene_that_does_not_exist(archived):
    client, scene = archived
    for path in (f"/v1/scenes/{scene.scene_id}/image.svg", "/v1/messages/m-1/voice.wav", "/v1/messages/m-1/formula"):
        refused = client.get(path, headers=GLOBEX)
        assert refused.status_code == 404, path
        assert refused.json()["error"]["code"] in ("scene_not_found", "message_not_found")
        assert client.get(path).status_code == 401
    assert client.get("/v1/scenes/nope/image.svg", headers=ACME).json()["error"]["code"] == "scene_not_found"
    assert client.get("/v1/tenant", headers=GLOBEX).json()["tenant"] == "globex"


def test_bad_requests_are_400_naming_what_is_wrong(archived):
    client, scene = archived
    gif = client.get(f"/v1/scenes/{scene.scene_id}/image.gif", headers=ACME)
    assert gif.status_code == 400 and gif.json()["error"]["code"] == "unsupported_format"
    assert "svg, png" in gif.json()["error"]["message"]
    mp3 = client.get("/v1/messages/m-1/voice.mp3", headers=ACME)
    assert mp3.status_code == 400 and "wav, ogg" in mp3.json()["error"]["message"]
    huge = client.get(f"/v1/scenes/{scene.scene_id}/image.png?scale=9", headers=ACME)
    assert huge.status_code == 400 and huge.json()["error"]["param"] == "scale"
    long_id = client.get(f"/v1/messages/{'m' * 300}/formula", headers=ACME)
    assert long_id.status_code == 400 and long_id.json()["error"]["param"] == "message_id"


def test_a_message_without_an_answer_has_no_voice(archived, tmp_path):
    from scenestream.agents.memory.archive import open_archive

    client, _ = archived
    archive = open_archive(tmp_path, None)
    try:
        archive.update_payload(archived[1].scene_id, {"answer": None})
    finally:
        archive.close()
    missing = client.get("/v1/messages/m-1/voice.wav", headers=ACME)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "answer_not_found"


def test_the_web_view_is_served_and_the_feed_waits_for_the_pipeline(archived):
    client, _ = archived
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/view/"
    page = client.get("/view/")
    assert page.status_code == 200 and 'id="key-dialog"' in page.text and 'src="app.js"' in page.text
    assert client.get("/view/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert client.get("/view/style.css").status_code == 200
    assert client.get("/v1/feed", headers=ACME).status_code == 503  # the service was never started
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/scenes/{scene_id}/image.{fmt}" in paths and "/v1/feed" not in paths
