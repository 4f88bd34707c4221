"""Training rows whose answers cite sources a 270M model cannot know, and removing them.

    python -m scenestream.ops.find_invented_sources            # list them, per file
    python -m scenestream.ops.find_invented_sources --json     # one JSON document
    python -m scenestream.ops.find_invented_sources --remove   # rewrite the files without them

Reads every row of ``data/decoder/*.jsonl`` (the corpora, train and test split) and
``data/decoder/sampled/*.jsonl`` (answers sampled from the adapters) and checks its answer with
``agents/decoder/answers.py``'s ``invented_sources`` (the documented pattern list ``SOURCE_PATTERNS``: bracketed
references, "according to research", "по данным", "исследования показывают", named organisations as sources,
scholarly apparatus, links). With ``--remove`` each file that has such rows is rewritten without them, every other
row kept byte for byte in its order. The test-split rows of the corpora count too: a held-out answer that invents a
source is a reference the adapters' held-out loss would reward imitating.

What selects the rows is this fixed pattern list alone; the style judge (``ops/judge.py``) and its data never
select or weight training examples.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from scenestream.agents.decoder.answers import invented_sources

ROOT = Path(__file__).resolve().parent.parent
DECODER = ROOT / "data" / "decoder"


def training_files(root: Path = DECODER) -> list[Path]:
    """The decoder corpora and the sampled answers, in a fixed order."""
    return sorted(root.glob("*.jsonl")) + sorted((root / "sampled").glob("*.jsonl"))


def scan(path: Path) -> tuple[list[str], list[dict]]:
    """The file's lines (blank ones dropped) and, for each row whose answer invents a source, ``{line, id, split,
    lang, sources}`` (``line`` counts from 1 among the kept lines)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    found = []
    for number, line in enumerate(lines, start=1):
        row = json.loads(line)
        sources = invented_sources(row.get("answer", ""))
        if sources:
            found.append(
                {
                    "line": number,
                    "id": row.get("id"),
                    "split": row.get("split"),
                    "lang": row.get("lang"),
                    "sources": sources,
                }
            )
    return lines, found


def find(files: Sequence[Path], remove: bool = False, root: Path = ROOT) -> dict:
    """Per file: its rows, the rows with invented sources (and by split), and with ``remove`` the rows left after
    rewriting it without them."""
    report: dict = {"files": {}, "rows": 0, "with_invented_sources": 0, "removed": 0}
    for path in files:
        lines, found = scan(path)
        name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        by_split: dict[str, int] = {}
        for row in found:
            by_split[str(row["split"])] = by_split.get(str(row["split"]), 0) + 1
        entry = {"rows": len(lines), "with_invented_sources": len(found), "by_split": by_split, "found": found}
        if remove and found:
            drop = {row["line"] for row in found}
            kept = [line for number, line in enumerate(lines, start=1) if number not in drop]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            entry["rows_after"] = len(kept)
            report["removed"] += len(found)
        report["files"][name] = entry
        report["rows"] += len(lines)
        report["with_invented_sources"] += len(found)
    return report


def render(report: dict, remove: bool) -> str:
    out = []
    for name, entry in report["files"].items():
        splits = ", ".join(f"{split} {n}" for split, n in sorted(entry["by_split"].items()))
        line = f"{name}: {entry['with_invented_sources']} of {entry['rows']} rows invent sources"
        line += f" ({splits})" if splits else ""
        if "rows_after" in entry:
            line += f"; removed, {entry['rows_after']} rows left"
        out.append(line)
        for row in entry["found"]:
            out.append(f"  {row['id']} [{row['split']}, {row['lang']}]: {' | '.join(row['sources'])}")
    verb = "removed" if remove else "found"
    out.append(f"{report['with_invented_sources']} of {report['rows']} rows invent sources; {verb}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scenestream.ops.find_invented_sources",
        description="List every training row (data/decoder/*.jsonl, data/decoder/sampled/*.jsonl) whose answer "
        "invents a source (agents/decoder/answers.py's SOURCE_PATTERNS); --remove rewrites the files without them.",
    )
    parser.add_argument("--remove", action="store_true", help="Rewrite each file without its rows that invent sources.")
    parser.add_argument("--json", action="store_true", help="Print one JSON document instead of lines.")
    parser.add_argument(
        "files", nargs="*", type=Path, help="JSON-lines files with an 'answer' per row (default: the training data)."
    )
    args = parser.parse_args(argv)
    report = find(args.files or training_files(), remove=args.remove)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(render(report, args.remove))
    return 0


if __name__ == "__main__":
    sys.exit(main())
