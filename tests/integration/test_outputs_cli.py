"""`scenestream ask --image --voice --formula --json` through the real embedded stack (broker, every stage, the
base model with its adapters on the transformers engine, 16 new tokens as the other ask tests), as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from xml.etree import ElementTree

CLI = [sys.executable, "-m", "scenestream"]


def test_ask_writes_the_picture_the_voice_and_the_formula(tmp_path):
    from scenestream.outputs.formula import Formula, parse_formula
    from scenestream.schemas.records import Scene
    from scenestream.settings import Settings
    from scenestream.training.provision import provision

    provision(Settings(), progress=False)
    env = dict(os.environ, SCENESTREAM_ENGINE="transformers", SCENESTREAM_MAX_NEW_TOKENS="16")
    env.pop("SCENESTREAM_BROKER", None)
    env["SCENESTREAM_DATA_DIR"] = str(tmp_path / "data")
    image, voice = tmp_path / "x.svg", tmp_path / "x.wav"
    out = subprocess.run(
        CLI
        + ["ask", "Почему я не чувствую шаг в себе?", "--image", str(image), "--voice", str(voice)]
        + ["--formula", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["stack"] == "embedded" and "errors" not in doc
    assert doc["image"] == str(image) and doc["voice"] == str(voice)
    scene = Scene.model_validate(doc["scene"])
    assert scene.stage == "resonated" and doc["output"]["text"].strip()

    # a valid SVG of this scene
    root = ElementTree.parse(image).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {el.get("class"): "".join(el.itertext()) for el in root.iter() if el.get("class") in {"delta", "rhythm"}}
    assert texts == {"delta": scene.delta_code, "rhythm": scene.field.rhythm}

    # a valid WAV of the answer: true sizes, some seconds of 16-bit mono speech
    with wave.open(str(voice)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        frames = wav.getnframes()
        assert len(wav.readframes(frames)) == frames * 2
        assert frames / wav.getframerate() > 0.5

    # the formula parses back into this scene's parts, and writes itself back as the same line
    formula = parse_formula(doc["formula"])
    assert formula == Formula.from_scene(scene) and str(formula) == doc["formula"]
    assert formula.delta_code == scene.delta_code and formula.resonance == round(scene.resonance, 2)
