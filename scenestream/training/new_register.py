"""A register of the user's own, from a file of texts with answers in its voice (``scenestream register add``).

    rows = read_examples(Path("stoic.jsonl"))          # {text, answer[, lang]} per line
    files = write_register("stoic", rows, folder, symbol="🏛", descriptions={...})
    report = refit(catalogue_with_it, settings)        # scenestream.training.router: the head, checked
    train(TrainConfig(register="stoic", out=folder / "adapters"), base)

A fifth of the rows (chosen by a hash of the text, so the same file always
splits the same way) is held out: the router head is measured on it, and the
adapter's held-out loss too; the rest trains both.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from scenestream.schemas.codec import read_jsonl
from scenestream.schemas.registers import check_name

MIN_EXAMPLES = 10
CYRILLIC = re.compile(r"[А-Яа-яЁё]")


def read_examples(path: Path) -> list[dict]:
    """The rows of a JSON-lines file of ``{text, answer[, lang]}``, checked: every row has a non-empty text and
    answer; ``lang`` (ru or en) is guessed from the text's letters where it is missing."""
    try:
        rows = read_jsonl(Path(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    checked = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: a row is a JSON object with text and answer")
        text, answer = str(row.get("text", "")).strip(), str(row.get("answer", "")).strip()
        if not text or not answer:
            raise ValueError(f"{path}:{n}: text and answer must both be non-empty")
        lang = row.get("lang") or ("ru" if CYRILLIC.search(text) else "en")
        if lang not in ("ru", "en"):
            raise ValueError(f"{path}:{n}: lang is ru or en, not {lang!r}")
        checked.append({"text": text, "answer": answer, "lang": lang})
    if len(checked) < MIN_EXAMPLES:
        raise ValueError(f"{path}: {len(checked)} examples; a register needs at least {MIN_EXAMPLES}")
    return checked


def split_of(text: str) -> str:
    """``test`` for about a fifth of the texts (by a hash of the text), ``train`` for the rest."""
    return "test" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 5 == 0 else "train"


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def write_register(
    name: str, rows: list[dict], folder: Path, symbol: str, descriptions: dict[str, str], replace: bool = False
) -> dict[str, Path]:
    """``folder/NAME.toml`` and the examples it names (``folder/NAME/decoder.jsonl`` for the adapter,
    ``folder/NAME/router.jsonl`` for the scene router); its adapter goes to ``folder/adapters/NAME``."""
    check_name(name)
    folder = Path(folder)
    file = folder / f"{name}.toml"
    if file.exists() and not replace:
        raise FileExistsError(f"{file} exists: remove it first, or add with --replace")
    splits = [split_of(row["text"]) for row in rows]
    if "test" not in splits or "train" not in splits:  # few rows: hold out the last fifth instead
        cut = max(1, len(rows) // 5)
        splits = ["train"] * (len(rows) - cut) + ["test"] * cut
    own = folder / name
    own.mkdir(parents=True, exist_ok=True)
    decoder, router = own / "decoder.jsonl", own / "router.jsonl"
    with decoder.open("w", encoding="utf-8") as dfh, router.open("w", encoding="utf-8") as rfh:
        for i, (row, split) in enumerate(zip(rows, splits), start=1):
            ident = f"{name}-{row['lang']}-{i:03d}"
            base = {"id": ident, "lang": row["lang"], "text": row["text"], "split": split}
            dfh.write(json.dumps({**base, "answer": row["answer"]}, ensure_ascii=False) + "\n")
            rfh.write(json.dumps({**base, "register": name}, ensure_ascii=False) + "\n")
    file.write_text(
        "# A register of the user's own, written by `scenestream register add` (the format of registers/poet.toml).\n"
        f"name = {toml_string(name)}\n"
        f"symbol = {toml_string(symbol)}\n"
        f'adapter = "adapters/{name}"\n\n'
        "[description]\n"
        f"ru = {toml_string(descriptions['ru'])}\n"
        f"en = {toml_string(descriptions['en'])}\n\n"
        "[examples]\n"
        f'decoder = ["{name}/decoder.jsonl"]\n'
        f'router = ["{name}/router.jsonl"]\n',
        encoding="utf-8",
    )
    return {"file": file, "decoder": decoder, "router": router, "adapters": folder / "adapters"}


def remove_files(files: dict[str, Path], name: str) -> None:
    """Undo :func:`write_register` (a refused register leaves nothing behind)."""
    for key in ("file", "decoder", "router"):
        files[key].unlink(missing_ok=True)
    own = files["file"].parent / name
    if own.is_dir() and not any(own.iterdir()):
        own.rmdir()
