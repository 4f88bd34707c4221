"""The scene as one line (scenestream.outputs.formula): format → parse round trips and malformed lines."""

from __future__ import annotations

import pytest

from scenestream.agents.scene.transform import ACTIVE_WEIGHT
from scenestream.outputs.formula import Formula, format_formula, parse_formula
from scenestream.schemas.records import RegisterWeight


def test_the_documented_example(make_scene):
    scene = make_scene(registers=[("body", 0.42), ("philosopher", 0.55), ("poet", 0.02), ("logician", 0.01)])
    line = format_formula(scene)
    assert line == "Δ41 = дрожь ⊗ тишина → вход | body 0.42 + philosopher 0.55 | ρ 0.85 🫁"
    assert parse_formula(line) == Formula(
        "Δ41", ("дрожь", "тишина", "вход"), (("body", 0.42), ("philosopher", 0.55)), 0.85, "🫁"
    )


@pytest.mark.parametrize(
    ("linkage", "lang", "concepts"),
    [
        ("дрожь·тишина·вход", "ru", ("дрожь", "тишина", "вход")),
        ("tremor·silence·entrance", "en", ("tremor", "silence", "entrance")),
        ("time·strange loop·self", "en", ("time", "strange loop", "self")),
        ("тишина·вход", "ru", ("тишина", "вход")),
        ("breath", "en", ("breath",)),
        ("", "en", ()),
    ],
)
def test_round_trip_gives_the_scenes_parts(make_scene, linkage, lang, concepts):
    scene = make_scene(
        linkage=linkage,
        lang=lang,
        registers=[("logician", 0.4567), ("poet", 0.3), ("body", 0.2), ("philosopher", 0.0433)],
        resonance=0.8349,
    )
    formula = parse_formula(format_formula(scene))
    assert formula.delta_code == scene.delta_code
    assert formula.concepts == concepts
    # the active registers (weight ≥ the builder's threshold, 0.2 included) in ranked order, two decimals
    assert [name for name, _ in formula.registers] == [r.name for r in scene.registers if r.weight >= ACTIVE_WEIGHT]
    assert formula.registers == (("logician", 0.46), ("poet", 0.3), ("body", 0.2))
    assert formula.resonance == 0.83
    assert formula.symbol == "🫁"
    assert format_formula(scene) == str(formula)


def test_fewer_concepts_are_written_with_what_there_is(make_scene):
    assert format_formula(make_scene(linkage="тишина·вход")).startswith("Δ41 = тишина ⊗ вход | ")
    assert format_formula(make_scene(linkage="тишина")).startswith("Δ41 = тишина | ")
    assert format_formula(make_scene(linkage="")).startswith("Δ41 = ∅ | ")


def test_no_symbol_and_no_resonance(make_scene):
    line = format_formula(make_scene(symbol=None, resonance=0.0, echoes=[], stage="formed"))
    assert line.endswith("| ρ 0.00")
    formula = parse_formula(line)
    assert formula.symbol is None and formula.resonance == 0.0


def test_register_names_are_data_not_the_four_shipped_ones(make_scene):
    # registers will be user-defined: model_construct builds a scene whose names the current schema does not list
    base = make_scene()
    scene = base.model_copy(
        update={
            "registers": [
                RegisterWeight.model_construct(name="mystic_2", weight=0.61),
                RegisterWeight.model_construct(name="child-voice", weight=0.39),
            ],
            "register": "mystic_2",
        }
    )
    line = format_formula(scene)
    assert "| mystic_2 0.61 + child-voice 0.39 |" in line
    assert parse_formula(line).registers == (("mystic_2", 0.61), ("child-voice", 0.39))


def test_no_active_register_writes_the_scenes_own(make_scene):
    scene = make_scene(registers=[("poet", 0.19), ("body", 0.18), ("logician", 0.17), ("philosopher", 0.16)])
    assert parse_formula(format_formula(scene)).registers == (("poet", 0.19),)
    assert parse_formula(format_formula(scene, threshold=0.17)).registers == (
        ("poet", 0.19),
        ("body", 0.18),
        ("logician", 0.17),
    )


def test_the_parser_takes_loose_spacing():
    formula = parse_formula("  Δ7=a⊗b→c|poet 0.5+body   0.25|ρ 1 ✨ ")
    assert formula == Formula("Δ7", ("a", "b", "c"), (("poet", 0.5), ("body", 0.25)), 1.0, "✨")


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("", "no '='"),
        ("Δ41 дрожь ⊗ тишина → вход | body 0.42 | ρ 0.85", "no '='"),
        ("D41 = дрожь | body 0.42 | ρ 0.85", "Δ-code 'D41'"),
        ("Δ41 = дрожь | body 0.42", "section"),
        ("Δ41 = дрожь | body 0.42 | ρ 0.85 | extra", "section"),
        ("Δ41 = | body 0.42 | ρ 0.85", "linkage is empty"),
        ("Δ41 = дрожь ⊗ | body 0.42 | ρ 0.85", "empty concept"),
        ("Δ41 = дрожь → вход | body 0.42 | ρ 0.85", "'→' follows a join"),
        ("Δ41 = a ⊗ b → c → d | body 0.42 | ρ 0.85", "more than one '→'"),
        ("Δ41 = дрожь | | ρ 0.85", "registers section is empty"),
        ("Δ41 = дрожь | Body 0.42 | ρ 0.85", "register name 'Body'"),
        ("Δ41 = дрожь | body | ρ 0.85", "'body' is not '<name> <weight>'"),
        ("Δ41 = дрожь | body 0,42 | ρ 0.85", "weight of register 'body' '0,42'"),
        ("Δ41 = дрожь | body 1.42 | ρ 0.85", "outside 0..1"),
        ("Δ41 = дрожь | body 0.42 + | ρ 0.85", "'' is not '<name> <weight>'"),
        ("Δ41 = дрожь | body 0.42 | r 0.85", "resonance section"),
        ("Δ41 = дрожь | body 0.42 | ρ high", "resonance 'high'"),
        ("Δ41 = дрожь | body 0.42 | ρ 0.85 🫁 🫁", "resonance section"),
        ("Δ41 = дрожь | body 0.42 | ρ 0.85\nΔ42 = a | poet 1 | ρ 0", "one line"),
    ],
)
def test_malformed_lines_name_what_is_wrong(line, complaint):
    with pytest.raises(ValueError) as caught:
        parse_formula(line)
    assert complaint in str(caught.value)


@pytest.mark.parametrize(
    ("update", "complaint"),
    [
        ({"delta_code": "41"}, "Δ-code '41'"),
        ({"linkage": "a|b·c"}, "holds '|'"),
        ({"linkage": "a⊗b·c"}, "holds '⊗'"),
        ({"linkage": "a·∅·c"}, "'∅'"),
        ({"registers": []}, "no registers"),
        ({"resonance": 1.5}, "resonance 1.5 is outside 0..1"),
        ({"symbol": "a b"}, "symbol 'a b'"),
    ],
)
def test_a_scene_that_cannot_be_written_says_why(make_scene, update, complaint):
    scene = make_scene().model_copy(update=update)
    with pytest.raises(ValueError) as caught:
        format_formula(scene)
    assert complaint in str(caught.value)
