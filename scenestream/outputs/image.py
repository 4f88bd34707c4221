"""The scene's field drawn as a picture: an SVG, and the same SVG as PNG.

    from scenestream.outputs.image import require_png, scene_png, scene_svg

    Path("scene.svg").write_text(scene_svg(scene), encoding="utf-8")
    Path("scene.png").write_bytes(scene_png(scene, scale=2))   # 1520×940 pixels

One card of :data:`WIDTH` × :data:`HEIGHT` user units:

* the header: the Δ-code, the linkage's concepts (``a ⊗ b → c``, as the formula
  writes them), the scene's symbol, and the text the scene was made of;
* FIELD: valence (a bar from the centre, red below zero, green above), arousal
  and tension (bars from the left), rhythm (its name and a stroke drawn in it:
  short ticks for staccato, even dashes for measured, a wave for flowing,
  broken uneven pieces for fragmented, a flat line for anything else);
* REGISTERS: one bar per register in ranked order, its width proportional to
  its weight; active registers (weight at or above the builder's threshold)
  are dark, the others pale;
* RESONANCE: a dot in the middle that grows with the resonance, one dot per
  echo around it (nearer and bigger the higher its score; its text in a
  tooltip), and the echoes listed with their scores.

The SVG is a pure function of the scene: the same scene gives byte-identical
SVG (no timestamps, no random ids, numbers written with fixed decimals). Text is
XML-escaped, characters XML cannot hold are dropped, long texts are cut with
``…``. Elements carry classes (``delta``, ``concept``, ``bar``, ``rhythm``,
``echo``, …) so tools and tests can find them.
"""

from __future__ import annotations

import math
import re
from xml.sax.saxutils import escape, quoteattr

from scenestream.agents.scene.transform import ACTIVE_WEIGHT
from scenestream.schemas.records import Scene

WIDTH = 760
HEIGHT = 470
# Cyrillic and emoji in every common system: DejaVu/Noto/Liberation carry Cyrillic, the emoji fonts the symbols
FONT_FAMILY = (
    "'DejaVu Sans', 'Noto Sans', 'Liberation Sans', Arial, 'Noto Color Emoji', 'Apple Color Emoji', "
    "'Segoe UI Emoji', sans-serif"
)

INK = "#2b2a28"
MUTED = "#7a756c"
GUIDE = "#d9d4ca"
PAPER = "#fbfaf7"
NEGATIVE = "#c0504d"
POSITIVE = "#4f9d69"
AROUSAL = "#e08a2c"
TENSION = "#8e44ad"
ACTIVE = "#3b6ea5"
INACTIVE = "#b8c7da"

TRACK_X, TRACK_W = 100, 170  # the field's gauges
BAR_X, BAR_W = 510, 170  # the register bars: weight 1 is BAR_W wide
RING_X, RING_Y, RING_R = 96, 382, 62  # the resonance diagram
ROW_Y, ROW_STEP = 140, 32
CONCEPT_CHARS, TEXT_CHARS, ECHO_CHARS, ECHO_LINES = 28, 96, 64, 5

# XML 1.0 cannot hold C0 controls other than tab, newline and carriage return (nor U+FFFE/U+FFFF)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def scene_svg(scene: Scene, threshold: float = ACTIVE_WEIGHT) -> str:
    """The scene as a self-contained SVG document (str); ``threshold``: the weight from which a register is active."""
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family={quoteattr(FONT_FAMILY)} fill="{INK}">'
        ),
        f"<title>{_text(f'scene {scene.delta_code}: {scene.linkage}')}</title>",
        f'<rect x="0.5" y="0.5" width="{WIDTH - 1}" height="{HEIGHT - 1}" rx="12" fill="{PAPER}" stroke="{GUIDE}"/>',
    ]
    parts += _header(scene)
    parts += _field(scene)
    parts += _registers(scene, threshold)
    parts += _resonance(scene)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def scene_png(scene: Scene, scale: float = 1.0, threshold: float = ACTIVE_WEIGHT) -> bytes:
    """The scene's SVG rendered to PNG by cairosvg: ``WIDTH*scale`` × ``HEIGHT*scale`` pixels.

    Raises ValueError for a scale that is not positive, :class:`ImageUnavailable` when cairosvg or the
    system's cairo library is missing.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return require_png().svg2png(bytestring=scene_svg(scene, threshold).encode("utf-8"), scale=scale)


class ImageUnavailable(RuntimeError):
    """What rendering a PNG needs is not installed (the message says how to install it)."""


def require_png():
    """cairosvg, once it is known to load (with the system's libcairo); else :class:`ImageUnavailable`.

    Cheap: callers check it before long work whose scene they mean to draw as PNG.
    """
    try:
        import cairosvg  # lazy: only PNG needs it (and it loads the system's libcairo)
    except ImportError as exc:
        raise ImageUnavailable("PNG needs cairosvg: pip install cairosvg") from exc
    except OSError as exc:  # cairocffi found no libcairo
        raise ImageUnavailable(f"PNG needs the cairo library: apt-get install libcairo2 ({exc})") from exc
    return cairosvg


def _header(scene: Scene) -> list[str]:
    concepts = [c.strip() for c in scene.linkage.split("·") if c.strip()]
    spans = []
    for i, concept in enumerate(concepts):
        if i:  # the formula's marks: joined by ⊗, the last one is what the join leads to
            mark = "→" if i == len(concepts) - 1 and len(concepts) >= 3 else "⊗"
            spans.append(f'<tspan class="join" dx="10" fill="{MUTED}">{mark}</tspan>')
        spans.append(f'<tspan class="concept" dx="{10 if i else 0}">{_text(concept, CONCEPT_CHARS)}</tspan>')
    if not spans:
        spans.append(f'<tspan class="concept-none" fill="{MUTED}">∅</tspan>')
    out = [
        f'<text class="delta" x="24" y="48" font-size="28" font-weight="bold">{_text(scene.delta_code)}</text>',
        f'<text class="linkage" x="120" y="47" font-size="22">{"".join(spans)}</text>',
    ]
    if scene.symbol:
        out.append(
            f'<text class="symbol" x="{WIDTH - 24}" y="48" font-size="30" text-anchor="end">'
            f"{_text(scene.symbol)}</text>"
        )
    out.append(
        f'<text class="text" x="24" y="74" font-size="13" fill="{MUTED}">'
        f"{_text(f'«{scene.text}»', TEXT_CHARS)} · {_text(scene.lang)} · {_text(scene.register)}</text>"
    )
    out.append(f'<line x1="24" y1="88" x2="{WIDTH - 24}" y2="88" stroke="{GUIDE}"/>')
    return out


def _field(scene: Scene) -> list[str]:
    field = scene.field
    out = [_section("FIELD", 24, 114)]
    centre = TRACK_X + TRACK_W / 2
    valence = max(-1.0, min(1.0, field.valence))
    rows = [
        # (name, the bar's x and width, colour, value as written)
        (
            "valence",
            min(centre, centre + valence * TRACK_W / 2),
            abs(valence) * TRACK_W / 2,
            NEGATIVE if valence < 0 else POSITIVE,
            _signed(valence),
        ),
        ("arousal", TRACK_X, _unit(field.arousal) * TRACK_W, AROUSAL, f"{field.arousal:.2f}"),
        ("tension", TRACK_X, _unit(field.tension) * TRACK_W, TENSION, f"{field.tension:.2f}"),
    ]
    for i, (name, x, width, colour, value) in enumerate(rows):
        y = ROW_Y + i * ROW_STEP
        out += [
            f'<text x="24" y="{y + 5}" font-size="13">{name}</text>',
            f'<rect class="track" x="{TRACK_X}" y="{y - 6}" width="{TRACK_W}" height="12" rx="3" fill="{GUIDE}"/>',
            (
                f'<rect class="gauge {name}" x="{x:.2f}" y="{y - 6}" width="{width:.2f}" height="12" rx="3" '
                f'fill="{colour}"/>'
            ),
            f'<text class="value {name}" x="{TRACK_X + TRACK_W + 12}" y="{y + 5}" font-size="13">{value}</text>',
        ]
    out.append(f'<line x1="{centre}" y1="{ROW_Y - 10}" x2="{centre}" y2="{ROW_Y + 10}" stroke="{MUTED}"/>')
    y = ROW_Y + 3 * ROW_STEP
    out += [
        f'<text x="24" y="{y + 5}" font-size="13">rhythm</text>',
        (
            f'<path class="rhythm-glyph" d="{_rhythm_path(field.rhythm, y)}" fill="none" stroke="{INK}" '
            f'stroke-width="2" stroke-linecap="round"/>'
        ),
        (
            f'<text class="rhythm" x="{TRACK_X + TRACK_W + 12}" y="{y + 5}" font-size="13" font-weight="bold">'
            f"{_text(field.rhythm)}</text>"
        ),
    ]
    return out


def _rhythm_path(rhythm: str, y: float) -> str:
    x0, x1 = TRACK_X, TRACK_X + TRACK_W
    if rhythm == "staccato":  # short, clipped, evenly apart
        return " ".join(f"M{x:.1f} {y - 5} L{x:.1f} {y + 5}" for x in _steps(x0 + 4, x1, 14))
    if rhythm == "measured":  # even dashes, even pauses
        return " ".join(f"M{x:.1f} {y} L{min(x + 22, x1):.1f} {y}" for x in _steps(x0, x1, 32))
    if rhythm == "flowing":  # one unbroken wave
        waves = 4
        step = TRACK_W / waves / 2
        path = f"M{x0} {y} "
        for i in range(waves * 2):
            crest = y - 8 if i % 2 == 0 else y + 8
            path += f"Q{x0 + (i + 0.5) * step:.1f} {crest} {x0 + (i + 1) * step:.1f} {y} "
        return path.strip()
    if rhythm == "fragmented":  # pieces of uneven length, out of line, with uneven gaps (a fixed pattern)
        pieces = [(0, 18, -3), (26, 33, 4), (48, 80, -1), (92, 98, 5), (112, 126, -4), (140, 170, 2)]
        return " ".join(f"M{x0 + a} {y + dy} L{x0 + b} {y + dy}" for a, b, dy in pieces)
    return f"M{x0} {y} L{x1} {y}"  # silent, or a rhythm this drawing does not know


def _registers(scene: Scene, threshold: float) -> list[str]:
    out = [_section("REGISTERS", 404, 114)]
    # rows shrink when there are many registers (registers are data), so the panel keeps its height
    step = min(ROW_STEP, 128 / max(1, len(scene.registers) - 1)) if len(scene.registers) > 1 else ROW_STEP
    for i, register in enumerate(scene.registers):
        y = ROW_Y + i * step
        active = register.weight >= threshold
        weight = _unit(register.weight)
        bold = ' font-weight="bold"' if active else ""
        out += [
            f'<text class="register" x="404" y="{y + 5:.2f}" font-size="13"{bold}>{_text(register.name, 14)}</text>',
            f'<rect class="track" x="{BAR_X}" y="{y - 6:.2f}" width="{BAR_W}" height="12" rx="3" fill="{GUIDE}"/>',
            (
                f'<rect class="bar{" active" if active else ""}" x="{BAR_X}" y="{y - 6:.2f}" '
                f'width="{weight * BAR_W:.2f}" height="12" rx="3" fill="{ACTIVE if active else INACTIVE}">'
                f"<title>{_text(register.name)} {register.weight:.2f}</title></rect>"
            ),
            (
                f'<text class="weight" x="{BAR_X + BAR_W + 10}" y="{y + 5:.2f}" font-size="13">'
                f"{register.weight:.2f}</text>"
            ),
        ]
    return out


def _resonance(scene: Scene) -> list[str]:
    resonance = _unit(scene.resonance)
    echoes = scene.echoes
    out = [
        f'<line x1="24" y1="288" x2="{WIDTH - 24}" y2="288" stroke="{GUIDE}"/>',
        _section("RESONANCE", 24, 310),
        f'<circle class="ring" cx="{RING_X}" cy="{RING_Y}" r="{RING_R}" fill="none" stroke="{GUIDE}"/>',
        (
            f'<circle class="ring" cx="{RING_X}" cy="{RING_Y}" r="{RING_R / 2}" fill="none" stroke="{GUIDE}" '
            f'stroke-dasharray="3 3"/>'
        ),
        (
            f'<circle class="resonance" cx="{RING_X}" cy="{RING_Y}" r="{4 + 12 * resonance:.2f}" fill="{ACTIVE}" '
            f'fill-opacity="{0.25 + 0.75 * resonance:.2f}"/>'
        ),
    ]
    for i, echo in enumerate(echoes):
        score = _unit(_score(echo))
        # one angle per echo, clockwise from the top; the higher the score, the nearer the centre
        angle = -math.pi / 2 + 2 * math.pi * i / len(echoes)
        distance = 18 + (RING_R - 18) * (1 - score)
        x, y = RING_X + distance * math.cos(angle), RING_Y + distance * math.sin(angle)
        out.append(
            f'<circle class="echo" cx="{x:.2f}" cy="{y:.2f}" r="{3 + 4 * score:.2f}" fill="{ACTIVE}" '
            f'fill-opacity="{0.35 + 0.65 * score:.2f}"><title>{score:.2f} · {_text(str(echo.get("text", "")))}'
            f"</title></circle>"
        )
    count = f"{len(echoes)} echo" + ("" if len(echoes) == 1 else "es")
    out.append(
        f'<text class="resonance-value" x="190" y="336" font-size="16" font-weight="bold">'
        f"ρ {scene.resonance:.2f} · {count}</text>"
    )
    for i, echo in enumerate(echoes[:ECHO_LINES]):
        out.append(
            f'<text class="echo-line" x="190" y="{362 + 20 * i}" font-size="13">'
            f'<tspan class="echo-score" font-weight="bold">{_score(echo):.2f}</tspan>'
            f'<tspan dx="10">{_text(str(echo.get("text", "")), ECHO_CHARS)}</tspan></text>'
        )
    if len(echoes) > ECHO_LINES:
        out.append(
            f'<text class="echo-more" x="190" y="{362 + 20 * ECHO_LINES}" font-size="13" fill="{MUTED}">'
            f"+ {len(echoes) - ECHO_LINES} more</text>"
        )
    if not echoes:
        out.append(f'<text class="echo-none" x="190" y="362" font-size="13" fill="{MUTED}">no echoes yet</text>')
    return out


def _section(name: str, x: float, y: float) -> str:
    return f'<text class="section" x="{x}" y="{y}" font-size="11" letter-spacing="1.5" fill="{MUTED}">{name}</text>'


def _text(value: str, limit: int | None = None) -> str:
    """``value`` as XML character data: characters XML cannot hold dropped, cut at ``limit`` with '…', escaped."""
    value = _NOT_XML.sub("", value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return escape(value)


def _score(echo: dict) -> float:
    return float(echo.get("score", 0.0))


def _unit(value: float) -> float:
    return max(0.0, min(1.0, float(value)))


def _signed(value: float) -> str:
    # a real minus sign, and a plus for positive values, so the sign reads at a glance
    return ("−" if value < 0 else "+" if value > 0 else "") + f"{abs(value):.2f}"


def _steps(start: float, stop: float, step: float) -> list[float]:
    values, x = [], start
    while x < stop:
        values.append(x)
        x += step
    return values
