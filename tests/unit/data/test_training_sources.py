"""The shipped training data invents no sources, and the script that finds such rows lists and removes exactly
them (``ops/find_invented_sources.py``, with ``agents/decoder/answers.py``'s pattern list)."""

from __future__ import annotations

import json

import pytest

from scenestream.ops.find_invented_sources import find, main, training_files


def test_shipped_training_and_sampled_rows_invent_no_sources():
    files = training_files()
    assert any(path.parent.name == "sampled" for path in files) and len(files) >= 5
    report = find(files)
    offenders = {name: [row["id"] for row in entry["found"]] for name, entry in report["files"].items()}
    assert report["with_invented_sources"] == 0, {name: ids for name, ids in offenders.items() if ids}


def write(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


ROWS = [
    {"id": "a", "split": "train", "lang": "en", "text": "Why?", "answer": "Because the premise fails."},
    {"id": "b", "split": "train", "lang": "en", "text": "How?", "answer": "Studies show it works [1]."},
    {"id": "c", "split": "test", "lang": "ru", "text": "Зачем?", "answer": "По данным ВОЗ, так лучше."},
    {"id": "d", "split": "train", "lang": "ru", "text": "Что?", "answer": "Шаг первый: определить цель."},
]


def test_lists_rows_with_invented_sources_and_removes_only_them(tmp_path):
    path = tmp_path / "logician.jsonl"
    write(path, ROWS)
    before = path.read_text(encoding="utf-8").splitlines()
    listed = find([path], root=tmp_path)
    entry = listed["files"]["logician.jsonl"]
    assert [row["id"] for row in entry["found"]] == ["b", "c"]
    assert entry["by_split"] == {"train": 1, "test": 1} and entry["rows"] == 4
    assert path.read_text(encoding="utf-8").splitlines() == before  # listing changes nothing

    removed = find([path], remove=True, root=tmp_path)
    assert removed["removed"] == 2 and removed["files"]["logician.jsonl"]["rows_after"] == 2
    assert path.read_text(encoding="utf-8").splitlines() == [before[0], before[3]]  # the rest byte for byte
    assert find([path], root=tmp_path)["with_invented_sources"] == 0


def test_command_line_json_and_help(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    write(path, ROWS)
    assert main(["--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["with_invented_sources"] == 2 and report["removed"] == 0
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "--remove" in capsys.readouterr().out
