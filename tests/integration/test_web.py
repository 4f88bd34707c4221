"""The web view in a real browser: Debian's headless Chromium, driven by Playwright's Python package, against a
real ``scenestream serve`` on its embedded stack (the ``served`` fixture: transformers engine, short answers, keys
of two tenants). Screenshots go to the test's output folder (its path is printed).

Without Playwright or the system Chromium these tests fail saying how to install them (``bash ops/install.sh
test`` as root installs both); they never skip.
"""

from __future__ import annotations

import re
import time
import wave
from io import BytesIO

import httpx
import pytest

from scenestream.ops.bench_web import NoBrowser, ask, card_times, launch, open_view, sync_playwright
from tests.integration.serving import K1, K2

QUESTION = "Почему я не чувствую шаг в себе?"
TIMEOUT_MS = 240_000  # the shared 2-core machine: the transformers engine answers in tens of seconds under load


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium (asked for before ``served``, so a missing browser fails before serve starts)."""
    missing = None
    try:
        with sync_playwright() as playwright:
            chromium = launch(playwright)
            yield chromium
            chromium.close()
    except NoBrowser as exc:
        missing = str(exc)
    if missing is not None:  # failed, not skipped: CI installs the browser (ops/install.sh test)
        pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    yield context.new_page()
    context.close()


def test_a_wrong_key_is_refused_in_the_key_dialog(browser, served, page):
    url, _ = served
    page.goto(f"{url}/", wait_until="load")
    assert page.url.endswith("/view/")
    page.locator("#key").fill("not-a-key")
    page.locator("#key-submit").click()
    page.locator("#key-error").filter(has_text="refused").wait_for(timeout=30_000)
    assert page.locator("#key-dialog").get_attribute("open") is not None
    assert page.evaluate("sessionStorage.getItem('scenestream.key')") is None


def test_ask_see_the_scene_then_the_answer_its_trace_its_session_and_erase_it(browser, served, page, shots):
    url, _ = served
    timings = open_view(page, url, K1)
    assert page.locator("#tenant").inner_text() == "tenant acme"
    assert page.evaluate("sessionStorage.getItem('scenestream.key')") == K1
    assert timings["load_ms"] > 0 and timings["ready_ms"] > 0

    # the chat: the scene card first, then the answer streams in
    first = ask(page, QUESTION, TIMEOUT_MS)
    times = card_times(first)
    assert 0 < times["scene_ms"] <= times["first_token_ms"] <= times["answer_ms"], times
    assert first.locator(".answer").get_attribute("data-state") == "final"
    answer = first.locator(".answer").inner_text()
    assert answer.strip()
    assert re.fullmatch(r"Δ\d+", first.locator(".delta-code").inner_text())
    mid = first.get_attribute("data-message-id")
    trace = httpx.get(f"{url}/v1/messages/{mid}/trace", headers={"Authorization": f"Bearer {K1}"}, timeout=60).json()
    names = [r["name"] for r in trace["archive"]["registers"]]
    assert first.locator(".registers .name").all_inner_texts() == names  # every register's weight, ranked
    assert first.locator(".registers li.active").count() >= 1
    assert first.locator(".resonance").inner_text().startswith("ρ 0.00")  # the session's first scene
    first.locator(".field-image[data-loaded=true]").wait_for(timeout=30_000)
    assert first.locator(".field-image").evaluate("(img) => img.naturalWidth") == 760  # the SVG's own width
    first.locator(".formula").filter(has_text=re.compile(r"^Δ\d+ = ")).wait_for(timeout=30_000)
    message_id = first.get_attribute("data-message-id")
    session = page.locator("#chat-session").inner_text()
    page.screenshot(path=shots / "chat.png")

    # the answer spoken: an Ogg the browser can play
    first.locator(".voice").click()
    first.locator(".voice-audio[data-loaded=true]").wait_for(timeout=60_000)
    page.wait_for_function(
        "(id) => document.querySelector(`#thread [data-message-id='${id}'] .voice-audio`).duration > 0.3",
        arg=message_id,
        timeout=30_000,
    )

    # the live feed showed the same message, its scene and its answer
    page.locator('nav a[data-view="live"]').click()
    live = page.locator(f'#feed > .card[data-message-id="{message_id}"]')
    live.locator(".answer[data-state=final]").wait_for(timeout=30_000)
    assert live.locator(".delta-code").inner_text() == first.locator(".delta-code").inner_text()
    assert live.locator(".answer").inner_text() == answer
    page.screenshot(path=shots / "live.png")

    # a second question in the same session: it resonates with the first
    page.locator('nav a[data-view="chat"]').click()
    second = ask(page, QUESTION, TIMEOUT_MS)
    assert second.locator(".answer").get_attribute("data-state") == "final"
    assert not second.locator(".resonance").inner_text().startswith("ρ 0.00"), "the same text recalls the first"

    # the trace of the first message: every stage's record and the timeline
    first.locator(".trace-link").click()
    page.wait_for_url(re.compile(f"#/trace/{message_id}$"))
    page.locator("#trace-records details").first.wait_for(timeout=60_000)
    topics = set(page.locator("#trace-records details").evaluate_all("(ds) => ds.map((d) => d.dataset.topic)"))
    assert {"raw-text", "tokens", "scenes", "lora-outputs"} <= topics, topics
    assert page.locator("#trace-timeline g.step").count() >= 4
    assert page.locator("#trace-timings g.timing").count() >= 3
    page.screenshot(path=shots / "trace.png", full_page=True)

    # the session: both scenes in order, the field's path, the resonance link between them
    first.locator(".session-link").evaluate("(a) => { location.hash = a.getAttribute('href'); }")
    page.locator("#field-plot circle.point").nth(1).wait_for(timeout=30_000)
    assert page.locator("#session-scenes > li").count() == 2
    assert page.locator("#field-plot polyline.path").count() == 1
    assert int(page.locator("#resonance-graph").get_attribute("data-links")) >= 1
    page.screenshot(path=shots / "session.png", full_page=True)

    # another tenant sees none of it
    other = browser.new_context().new_page()
    open_view(other, url, K2)
    other.evaluate("(s) => { location.hash = '#/session/' + s; }", session)
    other.locator("#session-status").filter(has_text="0 scenes").wait_for(timeout=30_000)
    other.evaluate("(m) => { location.hash = '#/trace/' + m; }", message_id)
    other.locator("#trace-status").filter(has_text="no trace").wait_for(timeout=30_000)
    assert other.locator(f'#feed [data-message-id="{message_id}"]').count() == 0
    other.context.close()

    # erase, after a confirmation that can be declined
    page.locator("#erase").click()
    page.locator("#erase-dialog[open]").wait_for()
    page.screenshot(path=shots / "erase.png")
    page.locator("#erase-cancel").click()
    assert page.locator("#session-scenes > li").count() == 2
    page.locator("#erase").click()
    page.locator("#erase-confirm").click()
    page.locator("#session-status").filter(has_text="erased session").wait_for(timeout=30_000)
    assert page.locator("#view-session").get_attribute("data-erased") == "2"
    assert page.locator("#session-scenes > li").count() == 0
    history = httpx.get(f"{url}/v1/sessions/{session}/history", headers={"Authorization": f"Bearer {K1}"})
    assert history.json()["data"] == []


def test_the_outputs_over_http_stay_in_their_tenant(served):
    """The routes behind the view's picture, voice and formula, on a message asked through the API."""
    url, _ = served
    one = {"Authorization": f"Bearer {K1}"}
    two = {"Authorization": f"Bearer {K2}"}
    body = {"model": "scenestream", "messages": [{"role": "user", "content": "Тишина перед входом дрожит."}]}
    done = httpx.post(f"{url}/v1/chat/completions", headers=one, json={**body, "user": "outputs-1"}, timeout=240)
    assert done.status_code == 200, done.text
    ext = done.json()["scenestream"]
    mid, scene_id = ext["message_id"], ext["scene_id"]

    svg = httpx.get(f"{url}/v1/scenes/{scene_id}/image.svg", headers=one)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert ext["delta_code"] in svg.text and svg.headers["cache-control"] == "no-store"
    png = httpx.get(f"{url}/v1/scenes/{scene_id}/image.png?scale=0.5", headers=one)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"

    formula = httpx.get(f"{url}/v1/messages/{mid}/formula", headers=one).json()
    assert (
        formula["formula"].startswith(f"{ext['delta_code']} = ") and formula["parts"]["delta_code"] == ext["delta_code"]
    )

    # the memory stage links the answer to its scene a moment after the answer is out
    for _ in range(40):
        voice = httpx.get(f"{url}/v1/messages/{mid}/voice.wav", headers=one, timeout=60)
        if voice.status_code != 404:
            break
        time.sleep(0.5)
    assert voice.status_code == 200 and voice.headers["content-type"] == "audio/wav", voice.text[:300]
    with wave.open(BytesIO(voice.content)) as wav:
        assert wav.getnchannels() == 1 and wav.getnframes() / wav.getframerate() > 0.3

    for path in (f"/v1/scenes/{scene_id}/image.svg", f"/v1/messages/{mid}/voice.ogg", f"/v1/messages/{mid}/formula"):
        refused = httpx.get(f"{url}{path}", headers=two)
        assert refused.status_code == 404, (path, refused.text)
    bad = httpx.get(f"{url}/v1/scenes/{scene_id}/image.gif", headers=one)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unsupported_format"
    assert httpx.get(f"{url}/v1/scenes/{scene_id}/image.svg").status_code == 401
