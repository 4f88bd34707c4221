"""The outputs written to files, as the command line writes them: the format from the file's suffix, checks
that are cheap done before any long work, and every failure as one :class:`OutputFailed` with a one-line message.

    from scenestream.outputs.files import check_target, require_tools, write_image, write_voice

    fmt = check_target("out/scene.png", "image")   # "png"; ValueError: another suffix, a folder, no such folder
    require_tools("image", fmt)                      # OutputFailed now (cairo missing), not after the pipeline ran
    write_image(scene, "out/scene.png")              # the scene's field picture (SVG or PNG by the suffix)
    write_voice(output, scene, "out/answer.ogg")     # the answer spoken (WAV or Ogg by the suffix)
    numbered("out/scene.svg", 3)                     # out/scene-3.svg: the picture of input line 3

Importing this module is light (no scene builder, no speech, no cairo): the option parser uses it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scenestream.schemas.records import LoraOutput, Scene

# what each output is written as, by the file's suffix (voice: scenestream.outputs.voice.FORMATS)
FORMATS = {"image": ("svg", "png"), "voice": ("wav", "ogg")}


class OutputFailed(RuntimeError):
    """An output could not be made or written: ``kind`` ("image", "voice", "formula") and ``reason``, one line
    naming the file and what went wrong; ``str()`` is ``"kind: reason"``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind, self.reason = kind, reason


def output_format(path: str | os.PathLike, kind: str) -> str:
    """The format of ``kind`` ("image" or "voice") that ``path``'s suffix names (any case); ValueError otherwise."""
    allowed = FORMATS[kind]
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in allowed:
        given = f"'.{suffix}'" if suffix else "no suffix"
        raise ValueError(
            f"{path}: the {kind}'s format comes from the suffix, {' or '.join('.' + f for f in allowed)}"
            f" (this file has {given})"
        )
    return suffix


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` as a Path once it looks writable: not a folder, in a folder that exists and may be written to.

    A check before work, not a promise: the write itself can still fail (a full disk), and then raises
    :class:`OutputFailed`. ValueError says what is wrong.
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{target} is a folder, not a file")
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"{target}: folder {folder} does not exist" + (" (it is a file)" if folder.exists() else ""))
    if target.exists():
        if not os.access(target, os.W_OK):
            raise ValueError(f"{target} exists and may not be written to")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{target}: folder {folder} may not be written to")
    return target


def check_target(path: str | os.PathLike, kind: str) -> str:
    """:func:`output_format` and :func:`check_writable` together: the format, or ValueError."""
    fmt = output_format(path, kind)
    check_writable(path)
    return fmt


def require_tools(kind: str, fmt: str) -> None:
    """OutputFailed when this machine cannot make ``kind`` in ``fmt`` (cairo for PNG, espeak-ng, Ogg encoding)."""
    try:
        if kind == "image" and fmt == "png":
            from scenestream.outputs.image import require_png

            require_png()
        elif kind == "voice":
            from scenestream.outputs.voice import require_speech

            require_speech(fmt)
    except (RuntimeError, ValueError) as exc:
        raise OutputFailed(kind, str(exc)) from exc


def numbered(path: str | os.PathLike, n: int) -> Path:
    """``path`` with ``-n`` before its suffix (``scene.svg``, 3 → ``scene-3.svg``), for one file per input line."""
    target = Path(path)
    return target.with_name(f"{target.stem}-{n}{target.suffix}")


def write_image(scene: Scene, path: str | os.PathLike) -> Path:
    """The scene's field picture written to ``path``, SVG or PNG by its suffix; OutputFailed on any failure."""
    target = Path(path)
    try:
        fmt = output_format(target, "image")
        from scenestream.outputs.image import scene_png, scene_svg

        data = scene_svg(scene).encode("utf-8") if fmt == "svg" else scene_png(scene)
    except (RuntimeError, ValueError) as exc:
        raise OutputFailed("image", str(exc)) from exc
    return _write(target, data, "image")


def write_voice(output: LoraOutput, scene: Scene, path: str | os.PathLike) -> Path:
    """The answer spoken in its scene's language and pace, written to ``path`` as WAV or Ogg by its suffix;
    OutputFailed on any failure (no espeak-ng, a blank answer, espeak-ng failing, the write failing)."""
    target = Path(path)
    try:
        fmt = output_format(target, "voice")
        from scenestream.outputs.voice import speak_answer

        data = speak_answer(output, scene, fmt)
    except (RuntimeError, ValueError) as exc:
        raise OutputFailed("voice", str(exc)) from exc
    return _write(target, data, "voice")


def make_outputs(
    scene: Scene | None,
    output: LoraOutput | None = None,
    *,
    image: str | os.PathLike | None = None,
    voice: str | os.PathLike | None = None,
    formula: bool = False,
) -> tuple[dict, dict]:
    """The outputs asked for, each made on its own: ``(fields, errors)``.

    ``fields`` has a key per output asked for: ``formula`` (the line), ``image`` and ``voice`` (the path
    written, as a string); an output that failed is None there, and ``errors`` maps its name to the reason
    (one line). One failing output does not stop the others.
    """
    fields: dict = {}
    errors: dict = {}
    wanted = [("formula", formula), ("image", image is not None), ("voice", voice is not None)]
    for kind, asked in wanted:
        if not asked:
            continue
        try:
            if scene is None:
                raise OutputFailed(kind, "no scene came back to make it from")
            if kind == "formula":
                from scenestream.outputs.formula import format_formula

                try:
                    fields[kind] = format_formula(scene)
                except ValueError as exc:
                    raise OutputFailed(kind, str(exc)) from exc
            elif kind == "image":
                fields[kind] = str(write_image(scene, image))
            else:
                if output is None:
                    raise OutputFailed(kind, "no answer came back to speak")
                fields[kind] = str(write_voice(output, scene, voice))
        except OutputFailed as exc:
            fields[kind] = None
            errors[kind] = exc.reason
    return fields, errors


def _write(target: Path, data: bytes, kind: str) -> Path:
    opened = False
    try:
        with open(target, "wb") as file:
            opened = True
            file.write(data)
    except OSError as exc:
        # no half file left behind (a file that could not be opened is untouched; a link is left alone)
        if opened:
            with contextlib.suppress(OSError):
                if target.is_file() and not target.is_symlink():
                    target.unlink()
        raise OutputFailed(kind, f"cannot write {target}: {exc.strerror or exc}") from exc
    return target
