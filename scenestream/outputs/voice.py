"""The answer spoken: offline speech by espeak-ng (Russian and English), paced by the scene's field.

    from scenestream.outputs.voice import require_speech, speak, speak_answer, voice_params

    wav = speak("Тишина отвечает дрожью.", "ru", scene.field)           # WAV bytes (mono, 16-bit, 22050 Hz)
    ogg = speak("Silence answers.", "en", scene.field, fmt="ogg")        # Ogg Vorbis bytes
    ogg = speak_answer(output, scene, fmt="ogg")                         # a LoraOutput in its scene's voice
    require_speech("ogg")                                                # SpeechUnavailable now, not after work
    voice_params("ru", {"valence": 0.2, "arousal": 0.7, "tension": 0.3, "rhythm": "staccato"})
    # {'voice': 'ru', 'speed': 212, 'pitch': 54, 'gap': 3}: what espeak-ng gets (-v, -s, -p, -g)

Needs Debian's ``espeak-ng`` (``apt-get install espeak-ng``; ``ops/install.sh``
installs it when run as root); without it :func:`speak` raises
:class:`SpeechUnavailable` — there is no other voice to fall back to. A better
local voice the user has (Piper, RHVoice, …) replaces it through
``SCENESTREAM_VOICE_COMMAND``: a command line reading the text on stdin and
writing a WAV to stdout, with the field's pace and pitch in its placeholders
(:func:`voice_command`). Ogg is
encoded by libsndfile's Vorbis encoder through PyPI ``soundfile`` (its wheels
bundle libsndfile), so nothing more is needed from Debian.

How the field sets the voice (:func:`voice_params`, pure): the pace grows with
arousal (130 words a minute when calm, 220 when aroused); "flowing" and
"measured" speech is slower, "fragmented" a little slower, "staccato" faster and
clipped (short pauses between words); the pitch rises with arousal and with
valence. Without a field the voice is espeak-ng's plain one at 160 words a
minute.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import wave
from collections.abc import Mapping

from scenestream.schemas.records import LoraOutput, Scene, SceneField

ESPEAK = "espeak-ng"
FORMATS = ("wav", "ogg")
PLAIN_SPEED = 160  # words per minute without a field (espeak-ng's own default, 175, is hurried for Russian)
PLAIN_PITCH = 50  # espeak-ng's default pitch, 0..99
# how each rhythm changes the pace (a factor) and the pause between words (espeak-ng -g, in 10 ms units)
RHYTHM_PACE = {"flowing": 0.85, "measured": 0.9, "fragmented": 0.95, "staccato": 1.1}
RHYTHM_GAP = {"staccato": 3, "fragmented": 6}


class SpeechUnavailable(RuntimeError):
    """A program or library speech needs is missing; the message names it and how to install it."""


class SpeechFailed(RuntimeError):
    """espeak-ng ran but gave no usable audio (its exit status and stderr are in the message)."""


def voice_params(lang: str, field: SceneField | Mapping | None = None) -> dict:
    """The espeak-ng voice for ``lang`` and ``field``: ``{"voice", "speed" (wpm), "pitch" (0..99), "gap"}``.

    ``lang`` "ru" (or "ru-…") speaks Russian, anything else English, as the scene builder reads languages.
    ``field`` is a scene's :class:`SceneField` or a mapping with its keys; None gives the plain voice.
    """
    voice = "ru" if lang.lower().startswith("ru") else "en"
    if field is None:
        return {"voice": voice, "speed": PLAIN_SPEED, "pitch": PLAIN_PITCH, "gap": 0}
    arousal = _clip(_get(field, "arousal"), 0.0, 1.0)
    valence = _clip(_get(field, "valence"), -1.0, 1.0)
    rhythm = str(_get(field, "rhythm"))
    speed = (130 + 90 * arousal) * RHYTHM_PACE.get(rhythm, 1.0)
    pitch = 42 + 16 * arousal + 6 * valence
    return {
        "voice": voice,
        "speed": round(_clip(speed, 80, 450)),  # espeak-ng takes 80..450 words a minute
        "pitch": round(_clip(pitch, 0, 99)),
        "gap": RHYTHM_GAP.get(rhythm, 0),
    }


PLACEHOLDERS = ("lang", "speed", "length_scale", "pitch", "gap")


def voice_command(template: str, params: Mapping) -> list[str]:
    """The argument list of a user's speech command (``SCENESTREAM_VOICE_COMMAND``) for the voice ``params``
    (:func:`voice_params`): split like a shell line first, then each argument's placeholders filled, so a
    value never becomes two arguments. ValueError naming an unknown placeholder."""
    import shlex

    values = {
        "lang": params["voice"],
        "speed": params["speed"],
        "length_scale": round(PLAIN_SPEED / params["speed"], 3),
        "pitch": params["pitch"],
        "gap": params["gap"],
    }
    try:
        return [part.format(**values) for part in shlex.split(template)]
    except (KeyError, IndexError) as exc:
        raise ValueError(
            f"SCENESTREAM_VOICE_COMMAND has an unknown placeholder {exc}: it may use {', '.join(PLACEHOLDERS)}"
        ) from None


def speak(
    text: str, lang: str, field: SceneField | Mapping | None = None, fmt: str = "wav", command: str | None = None
) -> bytes:
    """``text`` spoken in ``lang``, paced by ``field``, as ``fmt`` ("wav" or "ogg") bytes: by espeak-ng, or by
    ``command`` (default: ``SCENESTREAM_VOICE_COMMAND``; see :func:`voice_command`) where one is set.

    Raises ValueError for an unknown format or a blank text, :class:`SpeechUnavailable` when the synthesizer
    (or, for Ogg, soundfile) is missing, :class:`SpeechFailed` when it fails.
    """
    if not text.strip():
        raise ValueError("nothing to speak: the text is blank")
    command = _voice_command_setting() if command is None else command
    program = require_speech(fmt, command)
    params = voice_params(lang, field)
    if command:
        return _synthesize([program, *voice_command(command, params)[1:]], text, fmt)
    # -b 1: the text is UTF-8
    options = {"-v": params["voice"], "-s": params["speed"], "-p": params["pitch"], "-g": params["gap"], "-b": 1}
    command = [program, *(str(part) for option in options.items() for part in option), "--stdin", "--stdout"]
    return _synthesize(command, text, fmt)


def _synthesize(command: list[str], text: str, fmt: str) -> bytes:
    """Run a synthesizer that reads ``text`` on stdin and writes a WAV on stdout; the audio as ``fmt``."""
    try:
        # the text goes through stdin, so a text that starts with "-" is never read as an option
        done = subprocess.run(
            command, input=text.encode("utf-8"), capture_output=True, timeout=30 + len(text) / 100, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SpeechFailed(f"{command[0]} took longer than {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise SpeechFailed(
            f"{command[0]} exited with {done.returncode}: {done.stderr.decode(errors='replace').strip()}"
        )
    wav = _sized_wav(done.stdout, command[0])
    return wav if fmt == "wav" else _ogg_vorbis(wav)


def _voice_command_setting() -> str | None:
    from scenestream.settings import get_settings

    return get_settings().voice_command


def require_speech(fmt: str = "wav", command: str | None = None) -> str:
    """The path of the synthesizer (espeak-ng, or the program of ``command``, by default of
    ``SCENESTREAM_VOICE_COMMAND``), once it is known that ``fmt`` ("wav" or "ogg") can be spoken on this machine.

    Cheap (no speech): callers check it before long work whose result they mean to speak. Raises ValueError
    for an unknown format, :class:`SpeechUnavailable` naming what to install.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    command = _voice_command_setting() if command is None else command
    if command:  # the user's own synthesizer speaks instead of espeak-ng
        name = voice_command(command, voice_params("en"))[0]
        program = shutil.which(name)
        if program is None:
            raise SpeechUnavailable(f"SCENESTREAM_VOICE_COMMAND runs {name}, which is not on PATH")
    else:
        program = shutil.which(ESPEAK)
        if program is None:
            raise SpeechUnavailable(f"speech needs {ESPEAK}, which is not on PATH: apt-get install espeak-ng")
    if fmt == "ogg":
        _soundfile()
    return program


def speak_answer(output: LoraOutput, scene: Scene, fmt: str = "wav") -> bytes:
    """A decoder's answer spoken in its scene's language, paced by its scene's field (see :func:`speak`)."""
    return speak(output.text, scene.lang, scene.field, fmt)


def _sized_wav(stream: bytes, program: str = ESPEAK) -> bytes:
    """A synthesizer's WAV on stdout with true sizes.

    Writing to a pipe, espeak-ng cannot seek back to its header, so the RIFF and data sizes there are
    placeholders (about 2 GiB): readers would take the file for 12 hours of sound. The samples are the rest
    of the stream after the data chunk's header; they are written again under a correct header.
    """
    if stream[:4] != b"RIFF" or stream[8:12] != b"WAVE":
        raise SpeechFailed(f"{program} wrote no WAV ({len(stream)} bytes, starting {stream[:12]!r})")
    pos, fmt, samples = 12, None, None
    while pos + 8 <= len(stream):
        chunk, size = struct.unpack("<4sI", stream[pos : pos + 8])
        if chunk == b"data":
            samples = stream[pos + 8 :]
            break
        if chunk == b"fmt " and size >= 16:
            fmt = struct.unpack("<HHIIHH", stream[pos + 8 : pos + 24])
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise SpeechFailed(f"{program}'s WAV has no {'fmt' if fmt is None else 'data'} chunk")
    encoding, channels, rate, _, align, bits = fmt
    if encoding != 1 or bits % 8 or not align:
        raise SpeechFailed(f"{program}'s WAV is not integer PCM (format {encoding}, {bits} bits)")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(bits // 8)
        wav.setframerate(rate)
        wav.writeframes(samples[: len(samples) - len(samples) % align])
    return out.getvalue()


def _soundfile():
    """soundfile, once it is known to encode Ogg Vorbis (else :class:`SpeechUnavailable`)."""
    try:
        import soundfile
    except ImportError as exc:
        raise SpeechUnavailable("Ogg needs soundfile (its wheel bundles libsndfile): pip install soundfile") from exc
    except OSError as exc:  # soundfile without a libsndfile it can load
        raise SpeechUnavailable(f"Ogg needs libsndfile: pip install --force-reinstall soundfile ({exc})") from exc
    if "VORBIS" not in soundfile.available_subtypes("OGG"):
        raise SpeechUnavailable(
            f"this libsndfile ({soundfile.__libsndfile_version__}) cannot encode Ogg Vorbis: "
            "pip install --upgrade soundfile"
        )
    return soundfile


def _ogg_vorbis(wav_bytes: bytes) -> bytes:
    import numpy as np

    soundfile = _soundfile()
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        if wav.getsampwidth() != 2:
            raise SpeechFailed(f"{ESPEAK} wrote {8 * wav.getsampwidth()}-bit samples; Ogg encoding expects 16")
        channels, rate = wav.getnchannels(), wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, channels)
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="OGG", subtype="VORBIS")
    return out.getvalue()


def _get(field: SceneField | Mapping, name: str):
    try:
        return field[name] if isinstance(field, Mapping) else getattr(field, name)
    except (KeyError, AttributeError) as exc:
        raise ValueError(f"field has no {name!r} (it needs valence, arousal, tension and rhythm)") from exc


def _clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, float(value)))
