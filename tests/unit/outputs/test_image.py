"""The scene drawn (scenestream.outputs.image): the SVG's elements, determinism, escaping, and the PNG."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import pytest

from scenestream.outputs.image import BAR_W, HEIGHT, WIDTH, scene_png, scene_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def by_class(root: ET.Element, cls: str, tag: str | None = None) -> list[ET.Element]:
    """The elements whose class list holds ``cls`` (of SVG element ``tag`` when given), in document order."""
    return [e for e in root.iter(f"{SVG}{tag}" if tag else None) if cls in (e.get("class") or "").split()]


def test_the_svg_shows_the_scene(make_scene):
    scene = make_scene()
    root = parse(scene_svg(scene))
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox") == f"0 0 {WIDTH} {HEIGHT}"
    assert "DejaVu Sans" in root.get("font-family") and "Noto Color Emoji" in root.get("font-family")

    assert [e.text for e in by_class(root, "delta")] == ["Δ41"]
    assert [e.text for e in by_class(root, "concept")] == ["дрожь", "тишина", "вход"]
    assert [e.text for e in by_class(root, "join")] == ["⊗", "→"]
    assert [e.text for e in by_class(root, "symbol")] == ["🫁"]
    assert [e.text for e in by_class(root, "rhythm")] == ["fragmented"]
    assert len(by_class(root, "rhythm-glyph", "path")) == 1
    values = {e.get("class").split()[1]: e.text for e in by_class(root, "value")}
    assert values == {"valence": "−0.35", "arousal": "0.62", "tension": "0.48"}


def test_one_bar_per_register_proportional_to_its_weight(make_scene):
    scene = make_scene()
    bars = by_class(parse(scene_svg(scene)), "bar", "rect")
    assert len(bars) == len(scene.registers)
    for bar, register in zip(bars, scene.registers):
        assert float(bar.get("width")) == pytest.approx(register.weight * BAR_W, abs=0.01)
        assert ("active" in bar.get("class").split()) == (register.weight >= 0.2)
    names = [e.text for e in by_class(parse(scene_svg(scene)), "register")]
    assert names == ["philosopher", "body", "poet", "logician"]


def test_an_echo_mark_per_echo_with_its_score(make_scene):
    scene = make_scene()
    root = parse(scene_svg(scene))
    echoes = by_class(root, "echo", "circle")
    assert len(echoes) == len(scene.echoes) == 3
    assert [e.find(f"{SVG}title").text.split(" · ")[0] for e in echoes] == ["0.91", "0.74", "0.52"]
    # the higher the score, the bigger the mark
    radii = [float(e.get("r")) for e in echoes]
    assert radii == sorted(radii, reverse=True)
    assert [e.text for e in by_class(root, "echo-score")] == ["0.91", "0.74", "0.52"]
    assert by_class(root, "resonance-value")[0].text == "ρ 0.85 · 3 echoes"


def test_no_echoes_and_no_symbol(make_scene):
    root = parse(scene_svg(make_scene(echoes=[], resonance=0.0, symbol=None, linkage="breath", lang="en")))
    assert by_class(root, "echo", "circle") == []
    assert by_class(root, "symbol") == []
    assert [e.text for e in by_class(root, "concept")] == ["breath"]
    assert by_class(root, "resonance-value")[0].text == "ρ 0.00 · 0 echoes"


def test_same_scene_same_bytes(make_scene):
    assert scene_svg(make_scene()) == scene_svg(make_scene())
    assert scene_svg(make_scene()) != scene_svg(make_scene(resonance=0.5))


def test_text_is_escaped(make_scene):
    scene = make_scene(
        linkage='a<b·c&d·e>f"g',
        text="<script>alert('x')</script> & \x07",
        echoes=[{"scene_id": "x", "score": 0.8, "text": "</title><b>&amp;"}],
    )
    svg = scene_svg(scene)
    root = parse(svg)  # well-formed although every text holds markup characters (and a control character)
    assert [e.text for e in by_class(root, "concept")] == ["a<b", "c&d", 'e>f"g']
    assert "<script>" not in svg and "a&lt;b" in svg
    assert by_class(root, "echo", "circle")[0].find(f"{SVG}title").text == "0.80 · </title><b>&amp;"


def test_the_png_has_the_signature_and_the_size(make_scene):
    png = scene_png(make_scene(), scale=1.5)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    _length, chunk, width, height = struct.unpack(">I4sII", png[8:24])
    assert chunk == b"IHDR"
    assert (width, height) == (round(WIDTH * 1.5), round(HEIGHT * 1.5))


def test_the_png_refuses_a_scale_that_is_not_positive(make_scene):
    with pytest.raises(ValueError, match="scale"):
        scene_png(make_scene(), scale=0)
