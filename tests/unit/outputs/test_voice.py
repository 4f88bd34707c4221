"""The answer spoken (scenestream.outputs.voice): the field → voice mapping, and real espeak-ng speech.

The speech tests run espeak-ng itself and fail (they do not skip) where it is missing: CI installs it
(ops/install.sh, as root), and so must a developer (apt-get install espeak-ng).
"""

from __future__ import annotations

import io
import wave

import pytest

from scenestream.outputs.voice import SpeechUnavailable, speak, speak_answer, voice_params
from scenestream.schemas.records import LoraOutput, SceneField

RU = "Почему я не чувствую шаг в себе? Тишина отвечает мне тихой дрожью."
EN = "Why do I not feel the step inside me? Silence answers with a quiet tremor."


def field(arousal: float = 0.4, rhythm: str = "measured", valence: float = 0.0) -> SceneField:
    return SceneField(valence=valence, arousal=arousal, tension=0.3, rhythm=rhythm)


def wav_info(data: bytes) -> tuple[int, int, int, float]:
    """(channels, sample width, rate, seconds) of WAV bytes, as the wave module reads them."""
    with wave.open(io.BytesIO(data)) as wav:
        frames = wav.getnframes()
        assert len(wav.readframes(frames)) == frames * wav.getsampwidth() * wav.getnchannels()  # sizes are true
        return wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), frames / wav.getframerate()


# --- voice_params: pure --------------------------------------------------------------------------------------


def test_the_voice_follows_the_language():
    assert voice_params("ru")["voice"] == "ru"
    assert voice_params("ru-RU")["voice"] == "ru"
    assert voice_params("en")["voice"] == "en"
    assert voice_params("de")["voice"] == "en"  # the builder reads every language but Russian as English


def test_no_field_is_the_plain_voice():
    assert voice_params("en") == {"voice": "en", "speed": 160, "pitch": 50, "gap": 0}


def test_the_pace_grows_with_arousal():
    speeds = [voice_params("en", field(arousal=a))["speed"] for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert speeds == sorted(speeds) and speeds[0] < speeds[-1]
    pitches = [voice_params("en", field(arousal=a))["pitch"] for a in (0.0, 1.0)]
    assert pitches[0] < pitches[1]


def test_rhythm_sets_pace_and_pauses():
    pace = {r: voice_params("ru", field(rhythm=r)) for r in ("flowing", "measured", "fragmented", "staccato", "silent")}
    # flowing and measured speech is slower than speech of no particular rhythm, staccato faster
    assert pace["flowing"]["speed"] < pace["measured"]["speed"] < pace["silent"]["speed"] < pace["staccato"]["speed"]
    # staccato is clipped: short pauses between words; fragmented breaks longer; the others run on
    assert 0 < pace["staccato"]["gap"] < pace["fragmented"]["gap"]
    assert pace["flowing"]["gap"] == pace["measured"]["gap"] == pace["silent"]["gap"] == 0


def test_params_stay_in_espeaks_ranges_and_a_mapping_works_as_a_field():
    for arousal in (0.0, 1.0):
        for valence in (-1.0, 1.0):
            for rhythm in ("flowing", "staccato"):
                params = voice_params("en", {"valence": valence, "arousal": arousal, "tension": 1.0, "rhythm": rhythm})
                assert 80 <= params["speed"] <= 450 and 0 <= params["pitch"] <= 99
    assert voice_params("en", field().model_dump()) == voice_params("en", field())
    with pytest.raises(ValueError, match="arousal"):
        voice_params("en", {"valence": 0.0})


# --- speak: real espeak-ng ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "lang"), [(RU, "ru"), (EN, "en")])
def test_speak_gives_a_wav(text, lang):
    channels, width, rate, seconds = wav_info(speak(text, lang, field()))
    assert (channels, width, rate) == (1, 2, 22050)
    assert 2.0 < seconds < 12.0  # twelve words or so at 130..220 words a minute, with sentence pauses


@pytest.mark.parametrize(("text", "lang"), [(RU, "ru"), (EN, "en")])
def test_high_arousal_speaks_faster(text, lang):
    calm = wav_info(speak(text, lang, field(arousal=0.05)))[3]
    aroused = wav_info(speak(text, lang, field(arousal=0.95)))[3]
    assert aroused < 0.85 * calm


def test_speak_gives_an_ogg_vorbis_of_the_same_length():
    import soundfile  # a dependency of scenestream: missing, the test fails rather than skips

    wav_seconds = wav_info(speak(RU, "ru", field()))[3]
    ogg = speak(RU, "ru", field(), fmt="ogg")
    assert ogg[:4] == b"OggS"
    assert b"vorbis" in ogg[:64]
    info = soundfile.info(io.BytesIO(ogg))
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("OGG", "VORBIS", 1, 22050)
    assert info.duration == pytest.approx(wav_seconds, abs=0.05)


def test_speak_answer_uses_the_scenes_language_and_field(make_scene):
    scene = make_scene(lang="en", field={"valence": 0.0, "arousal": 0.4, "tension": 0.3, "rhythm": "measured"})
    output = LoraOutput(
        message_id="m-1",
        session_id="s-1",
        scene_id=scene.scene_id,
        text=EN,
        register="poet",
        adapter="poet",
        engine="test",
        model="test",
        delta_code=scene.delta_code,
    )
    assert speak_answer(output, scene) == speak(EN, "en", field())


def test_a_text_starting_with_a_dash_is_spoken_not_read_as_an_option():
    assert wav_info(speak("-s 999 minus sign", "en"))[3] > 0.5


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="mp3"):
        speak(EN, "en", fmt="mp3")
    with pytest.raises(ValueError, match="blank"):
        speak("  \n", "en")


def test_missing_espeak_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no espeak-ng to be found
    with pytest.raises(SpeechUnavailable, match="apt-get install espeak-ng") as caught:
        speak(EN, "en")
    assert isinstance(caught.value, RuntimeError)


# --- a voice of the user's own (SCENESTREAM_VOICE_COMMAND) ---------------------------------------------------


def test_a_voice_command_gets_the_fields_pace_in_its_placeholders():
    from scenestream.outputs.voice import voice_command, voice_params

    params = voice_params("ru", field(arousal=0.95))
    argv = voice_command("piper --model '/my voices/{lang}.onnx' --length_scale {length_scale} -s {speed}", params)
    assert argv[:3] == ["piper", "--model", "/my voices/ru.onnx"]  # one argument, spaces and all
    assert float(argv[4]) == pytest.approx(160 / params["speed"], abs=1e-3) and float(argv[4]) < 1  # faster
    assert argv[-1] == str(params["speed"])
    with pytest.raises(ValueError, match="unknown placeholder 'volume'.*lang, speed"):
        voice_command("piper --volume {volume}", params)


def test_a_configured_synthesizer_speaks_instead_of_espeak_and_follows_the_field():
    own = "espeak-ng -v {lang} -s {speed} -p {pitch} -g {gap} --stdin --stdout"  # any program that writes a WAV
    calm = wav_info(speak(EN, "en", field(arousal=0.05), command=own))[3]
    aroused = wav_info(speak(EN, "en", field(arousal=0.95), command=own))[3]
    assert aroused < 0.85 * calm
    assert speak(EN, "en", field(), fmt="ogg", command=own)[:4] == b"OggS"


def test_a_configured_synthesizer_that_is_missing_or_fails_says_so():
    from scenestream.outputs.voice import SpeechFailed, SpeechUnavailable

    with pytest.raises(SpeechUnavailable, match="no-such-synthesizer"):
        speak(EN, "en", field(), command="no-such-synthesizer --lang {lang}")
    with pytest.raises(SpeechFailed, match="false exited with 1"):
        speak(EN, "en", field(), command="false")
