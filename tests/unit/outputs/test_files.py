"""The outputs written to files (scenestream.outputs.files): formats from suffixes, the checks before work,
and every failure as one OutputFailed line. Real espeak-ng and cairo, as the other output tests."""

from __future__ import annotations

import io
import os
import wave
import xml.etree.ElementTree as ET

import pytest

from scenestream.outputs import voice as voice_module
from scenestream.outputs.files import (
    FORMATS,
    OutputFailed,
    check_target,
    check_writable,
    make_outputs,
    numbered,
    output_format,
    require_tools,
    write_image,
    write_voice,
)
from scenestream.outputs.formula import Formula, parse_formula
from scenestream.outputs.image import scene_svg
from scenestream.schemas.records import LoraOutput

SVG = "{http://www.w3.org/2000/svg}svg"


def answer(scene, text: str = "Тишина отвечает мне тихой дрожью.") -> LoraOutput:
    return LoraOutput(
        message_id=scene.message_id,
        session_id=scene.session_id,
        scene_id=scene.scene_id,
        text=text,
        register="body",
        adapter="body",
        engine="test",
        model="test",
        delta_code=scene.delta_code,
    )


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


# --- checks before work ----------------------------------------------------------------------------------------


def test_the_format_comes_from_the_suffix():
    assert output_format("a/scene.svg", "image") == "svg"
    assert output_format("scene.PNG", "image") == "png"
    assert output_format("answer.wav", "voice") == "wav" and output_format("answer.Ogg", "voice") == "ogg"
    assert FORMATS["voice"] == voice_module.FORMATS  # one list of what speech can write


@pytest.mark.parametrize(
    ("path", "kind", "said"),
    [
        ("scene.jpg", "image", "'.jpg'"),
        ("scene", "image", "no suffix"),
        ("answer.mp3", "voice", "'.mp3'"),
        ("answer.svg", "voice", "'.svg'"),
    ],
)
def test_another_suffix_is_refused_naming_the_allowed_ones(path, kind, said):
    with pytest.raises(ValueError) as caught:
        output_format(path, kind)
    message = str(caught.value)
    assert said in message and " or ".join("." + f for f in FORMATS[kind]) in message and "\n" not in message


def test_a_path_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a folder"):
        check_writable(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        check_writable(tmp_path / "missing" / "scene.svg")
    with pytest.raises(ValueError, match="it is a file"):
        check_writable(tmp_path / "afile" / "scene.svg")
    assert check_writable(tmp_path / "scene.svg") == tmp_path / "scene.svg"
    assert check_target(tmp_path / "scene.png", "image") == "png"
    with pytest.raises(ValueError, match="'.gif'"):
        check_target(tmp_path / "scene.gif", "image")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder: the permission bits stop no one")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="may not be written to"):
        check_writable(locked / "scene.svg")


def test_missing_espeak_is_found_before_any_work(monkeypatch, tmp_path):
    require_tools("voice", "wav")  # espeak-ng is installed here (ops/install.sh)
    require_tools("image", "png")  # and cairo
    require_tools("image", "svg")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no espeak-ng
    with pytest.raises(OutputFailed, match="apt-get install espeak-ng") as caught:
        require_tools("voice", "ogg")
    assert caught.value.kind == "voice" and str(caught.value).startswith("voice: ")
    require_tools("image", "svg")  # an SVG needs nothing


def test_numbered_files_keep_folder_and_suffix(tmp_path):
    assert numbered(tmp_path / "scene.svg", 3) == tmp_path / "scene-3.svg"
    assert numbered("out/s.PNG", 12).as_posix() == "out/s-12.PNG"


# --- writing ---------------------------------------------------------------------------------------------------


def test_write_image_svg_and_png(make_scene, tmp_path):
    scene = make_scene()
    svg = write_image(scene, tmp_path / "scene.svg")
    assert svg.read_text(encoding="utf-8") == scene_svg(scene)
    root = ET.fromstring(svg.read_bytes())
    assert root.tag == SVG and root.get("width") == "760"
    png = write_image(scene, tmp_path / "scene.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 760  # IHDR width: the SVG's size at scale 1


def test_write_voice_wav_and_ogg(make_scene, tmp_path):
    scene = make_scene()
    wav = write_voice(answer(scene), scene, tmp_path / "answer.wav").read_bytes()
    assert 1.0 < wav_seconds(wav) < 10.0
    ogg = write_voice(answer(scene), scene, tmp_path / "answer.ogg").read_bytes()
    assert ogg[:4] == b"OggS" and b"vorbis" in ogg[:64]


def test_a_failed_write_is_one_line_and_leaves_no_half_file(make_scene, tmp_path):
    scene = make_scene()
    full = tmp_path / "full.svg"
    full.symlink_to("/dev/full")  # every write there fails: the disk is full
    with pytest.raises(OutputFailed, match="No space left on device") as caught:
        write_image(scene, full)
    assert caught.value.kind == "image" and "\n" not in str(caught.value)
    assert full.is_symlink()  # a link is left alone
    gone = tmp_path / "gone"
    gone.mkdir()
    check_writable(gone / "answer.wav")
    gone.rmdir()  # the folder went away while the pipeline ran
    with pytest.raises(OutputFailed, match="cannot write .*answer.wav"):
        write_voice(answer(scene), scene, gone / "answer.wav")


def test_a_blank_answer_is_not_spoken(make_scene, tmp_path):
    scene = make_scene()
    with pytest.raises(OutputFailed, match="blank"):
        write_voice(answer(scene, "   "), scene, tmp_path / "answer.wav")
    assert not (tmp_path / "answer.wav").exists()


def test_make_outputs_makes_each_on_its_own(make_scene, tmp_path):
    scene = make_scene()
    fields, errors = make_outputs(
        scene, answer(scene), image=tmp_path / "s.svg", voice=tmp_path / "a.wav", formula=True
    )
    assert errors == {}
    assert fields == {"formula": fields["formula"], "image": str(tmp_path / "s.svg"), "voice": str(tmp_path / "a.wav")}
    assert parse_formula(fields["formula"]) == Formula.from_scene(scene)
    # no answer: the voice fails, the others are made
    fields, errors = make_outputs(scene, None, image=tmp_path / "t.svg", voice=tmp_path / "b.wav", formula=True)
    assert fields["voice"] is None and list(errors) == ["voice"] and "no answer" in errors["voice"]
    assert fields["image"] == str(tmp_path / "t.svg") and fields["formula"].startswith("Δ41 = ")
    assert not (tmp_path / "b.wav").exists()
    # no scene: nothing can be made; nothing asked: nothing made
    fields, errors = make_outputs(None, None, image=tmp_path / "u.svg", formula=True)
    assert fields == {"formula": None, "image": None} and set(errors) == {"formula", "image"}
    assert make_outputs(scene) == ({}, {})
