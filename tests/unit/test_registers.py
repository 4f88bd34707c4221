"""The register catalogue: registers are data (registers/*.toml plus the user's folders), records and the scene
router read it, and every adapter version is the content hash of its weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from scenestream.schemas.codec import SchemaError, decode, encode
from scenestream.schemas.records import RegisterWeight, Scene
from scenestream.schemas.registers import (
    SHIPPED,
    Catalogue,
    CatalogueError,
    catalogue,
    folders_from,
    read_register,
    use,
    version_of,
)

STOIC = """
name = "stoic"
symbol = "🏛"
adapter = "adapters/stoic"

[description]
ru = "Стоик: спокойно отделяет то, что в нашей власти, от того, что нет."
en = "The stoic: calmly separates what is in our power from what is not."

[examples]
decoder = ["stoic.jsonl"]
"""


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my-registers"
    folder.mkdir()
    (folder / "stoic.toml").write_text(STOIC, encoding="utf-8")
    return folder


@pytest.fixture
def restore():
    """Whatever a test installs with use(), the process's catalogue afterwards is the shipped one again."""
    yield
    use(None)


def scene(register: str = "body"):
    from tests.unit.agents.decoder.test_prompt_engines import scene as a_scene

    weights = [RegisterWeight(name=register, weight=0.6), RegisterWeight(name="philosopher", weight=0.4)]
    return a_scene(register=register, registers=weights)


def test_the_shipped_catalogue_declares_the_four_registers_in_order():
    shipped = Catalogue.load([SHIPPED])
    assert shipped.names == ("poet", "logician", "body", "philosopher")
    assert shipped.symbols == {"poet": "🪶", "logician": "🧮", "body": "🫁", "philosopher": "🦉"}
    for decl in shipped:
        assert decl.shipped and decl.description["ru"] and decl.description["en"]
        assert decl.adapter is not None and (decl.adapter / "adapter_config.json").exists()
        assert decl.decoder_examples and all(p.exists() for p in decl.decoder_examples)
        assert decl.router_examples and all(p.exists() for p in decl.router_examples)
    assert catalogue().names == shipped.names  # no SCENESTREAM_REGISTERS_PATH in the tests


def test_a_user_folder_adds_a_register_after_the_shipped_ones(user_folder):
    both = Catalogue.load(folders_from(str(user_folder)))
    assert both.names == ("poet", "logician", "body", "philosopher", "stoic")
    stoic = both["stoic"]
    assert not stoic.shipped and stoic.symbol == "🏛" and stoic.order == 100
    assert stoic.adapter == (user_folder / "adapters" / "stoic").resolve()
    assert stoic.decoder_examples == ((user_folder / "stoic.jsonl").resolve(),)
    assert stoic.adapter_version() is None  # no weights there yet


def test_a_user_file_replaces_a_shipped_register_of_the_same_name(tmp_path):
    (tmp_path / "poet.toml").write_text(STOIC.replace('"stoic"', '"poet"'), encoding="utf-8")
    mine = Catalogue.load(folders_from(str(tmp_path)))
    assert mine.names == ("poet", "logician", "body", "philosopher")[1:] + ("poet",)  # order 100: last
    assert mine["poet"].symbol == "🏛" and mine["poet"].source == (tmp_path / "poet.toml").resolve()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (STOIC.replace('symbol = "🏛"', 'symbol = "🏛"\ncolour = "red"'), "colour: Extra inputs are not permitted"),
        (STOIC.replace('name = "stoic"', 'name = "Stoic!"'), "lowercase latin letters"),
        (STOIC.replace('en = "The stoic', 'xx = "The stoic'), "description.en: Field required"),
        (STOIC.replace('name = "stoic"', 'name = "base"'), "reserved"),
        (STOIC.replace('name = "stoic"', 'name = "cynic"'), "must be named cynic.toml"),
        ("name = ", "Invalid value"),
    ],
)
def test_a_bad_register_file_is_refused_naming_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "stoic.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError, match=problem) as caught:
        read_register(path)
    assert str(path) in str(caught.value)


def test_a_missing_user_folder_is_an_error(tmp_path):
    with pytest.raises(CatalogueError, match="does not exist"):
        Catalogue.load(folders_from(str(tmp_path / "nowhere")))


def test_records_are_validated_against_the_catalogue_in_use(user_folder, restore):
    with pytest.raises(ValueError, match="unknown register 'stoic'.*poet, logician, body, philosopher"):
        RegisterWeight(name="stoic", weight=1.0)
    use(Catalogue.load(folders_from(str(user_folder))))  # the register is added while the process runs
    assert RegisterWeight(name="stoic", weight=1.0).name == "stoic"
    value = encode(scene("stoic"))
    assert decode(value, Scene).register == "stoic"
    use(Catalogue.load([SHIPPED]))  # and removed again: a record naming it goes to the dead-letter topic
    with pytest.raises(SchemaError, match="unknown register 'stoic'"):
        decode(value, Scene)


def test_an_adapter_version_is_the_hash_of_its_weights(tmp_path):
    source = SHIPPED.parent / "agents" / "decoder" / "adapters" / "poet"
    copy = tmp_path / "poet"
    shutil.copytree(source, copy)
    assert version_of("poet", copy) == version_of("poet", source) == catalogue()["poet"].adapter_version()
    assert version_of("poet", copy).startswith("poet@") and len(version_of("poet", copy)) == len("poet@") + 12
    (copy / "README.md").write_text("notes change nothing")
    assert version_of("poet", copy) == version_of("poet", source)
    weights = copy / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert version_of("poet", copy) != version_of("poet", source)
    assert catalogue()["poet"].adapter_version(adapters_dir=tmp_path) == version_of("poet", copy)
    with pytest.raises(CatalogueError, match="no adapter files"):
        version_of("poet", tmp_path)


def test_the_router_never_routes_to_a_register_the_catalogue_no_longer_holds(restore):
    from scenestream.agents.scene.transform import register_weights, routable

    names = ("poet", "logician", "body", "philosopher")
    probs = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert np.allclose(routable(probs, names), probs)
    keep = Catalogue.load([SHIPPED])
    use(Catalogue(tuple(d for d in keep if d.name != "philosopher")))
    routed = routable(probs, names)
    assert routed[0, 3] == 0 and np.isclose(routed.sum(), 1.0)
    assert register_weights(routed[0], names)[0].name == "body"
    use(Catalogue(tuple(d for d in keep if d.name == "stoic")))  # none of the head's registers left
    with pytest.raises(ValueError, match="refit the head"):
        routable(probs, names)


def test_an_answer_names_the_adapter_version_that_wrote_it():
    from scenestream.agents.decoder.engines import Generation, adapters_in
    from scenestream.agents.decoder.transform import Decoder
    from scenestream.settings import Settings

    class Engine:
        name, model = "fake", "fake-model"
        adapters = adapters_in(Settings())
        versions = {name: version_of(name, folder) for name, folder in adapters.items()}  # as engines keep them

    scene_ = scene("poet")
    decoder = Decoder(Engine(), settings=Settings())
    answer = decoder.final(scene_, Generation("A line.", "poet", 3, 3, None, 1.0, "stop"), 0, {})
    assert answer.adapter_version == catalogue()["poet"].adapter_version()
    base = decoder.final(scene_, Generation("A line.", "base", 3, 3, None, 1.0, "stop"), 0, {})
    assert base.adapter_version is None


def test_register_list_shows_each_register_with_its_adapter_version(user_folder, monkeypatch, restore):
    import json

    from typer.testing import CliRunner

    from scenestream.cli import app

    monkeypatch.setenv("SCENESTREAM_REGISTERS_PATH", str(user_folder))
    use(None)  # read again, with the user's folder
    result = CliRunner().invoke(app, ["register", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["poet", "logician", "body", "philosopher", "stoic"]
    assert rows["poet"]["adapter_version"] == Catalogue.load([SHIPPED])["poet"].adapter_version()
    assert rows["stoic"]["adapter_version"] is None and "base model" in rows["stoic"]["problem"]
    monkeypatch.setenv("SCENESTREAM_REGISTERS_PATH", str(user_folder / "missing"))
    use(None)
    result = CliRunner().invoke(app, ["register", "list"])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_a_change_is_applied_only_with_the_weights_it_announces(user_folder, tmp_path):
    from scenestream.registry import applied
    from scenestream.schemas.records import RegisterChange

    shipped = Catalogue.load([SHIPPED])
    adapter = user_folder / "adapters" / "stoic"
    shutil.copytree(SHIPPED.parent / "agents" / "decoder" / "adapters" / "body", adapter)
    version = version_of("stoic", adapter)
    change = RegisterChange(
        name="stoic", file=str(user_folder / "stoic.toml"), adapter=str(adapter), adapter_version=version
    )
    added = applied(shipped, change)
    assert added.names == (*shipped.names, "stoic") and added["stoic"].adapter_version() == version
    assert applied(added, RegisterChange(name="stoic", removed=True)).names == shipped.names
    assert applied(shipped, RegisterChange(name="stoic", removed=True)) is shipped  # nothing to remove
    (adapter / "adapter_model.safetensors").write_bytes(b"other weights")
    with pytest.raises(CatalogueError, match="publish the register again"):
        applied(shipped, change)
    with pytest.raises(CatalogueError, match="declares 'stoic'"):
        applied(shipped, change.model_copy(update={"name": "cynic"}))
    with pytest.raises(ValueError, match="needs its file"):
        RegisterChange(name="stoic")


def test_an_archived_scene_stays_readable_after_one_of_its_registers_is_removed(user_folder, restore):
    from scenestream.audit import readable
    from scenestream.schemas.codec import to_jsonable

    use(Catalogue.load(folders_from(str(user_folder))))
    row = to_jsonable(scene("stoic"))  # archived while the stoic register existed
    use(Catalogue.load([SHIPPED]))
    with pytest.raises(ValueError, match="unknown register 'stoic'"):
        Scene.model_validate(row)
    again = Scene.model_validate(readable(row))
    assert again.register == "stoic" and [w.name for w in again.registers] == ["philosopher"]
    shipped_row = to_jsonable(scene("body"))
    assert readable(shipped_row) is shipped_row
