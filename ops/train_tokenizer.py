"""Train the tokenizer's SentencePiece unigram model on the project's own corpus.

    python -m scenestream.ops.train_tokenizer            # writes agents/tokenizer/spm.model
    python -m scenestream.ops.train_tokenizer --vocab-size 8000 --out /tmp/spm

Corpus: ``data/corpus/*.txt`` (Russian and English prose) plus the *train*
split of ``data/registers/*.jsonl`` (the held-out split is never used). Text
is normalized exactly as the tokenizer stage normalizes it, and emoji,
Δ-codes and math symbols are user-defined symbols, so they stay whole.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from scenestream.agents.tokenizer.symbols import normalize, user_defined_symbols

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "agents" / "tokenizer" / "spm"


def corpus_lines(root: Path = ROOT) -> list[str]:
    lines: list[str] = []
    for path in sorted((root / "data" / "corpus").glob("*.txt")):
        lines += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for path in sorted((root / "data" / "registers").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            if item.get("split") == "train":
                lines.append(item["text"])
    if not lines:
        raise typer.BadParameter(f"no corpus under {root / 'data'}")
    return lines


def train(out: Path = DEFAULT_OUT, vocab_size: int = 8000) -> Path:
    import sentencepiece as spm

    lines = corpus_lines()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as tmp:
        for line in lines:
            tmp.write(normalize(line)[0] + "\n")
    spm.SentencePieceTrainer.train(
        input=tmp.name,
        model_prefix=str(out),
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=0.9995,
        normalization_rule_name="identity",  # the stage normalizes (and protects symbols) itself
        user_defined_symbols=user_defined_symbols(),
        split_digits=True,
        byte_fallback=False,
        hard_vocab_limit=False,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        minloglevel=2,
    )
    Path(tmp.name).unlink()
    return out.with_suffix(".model")


def main(
    out: Path = typer.Option(DEFAULT_OUT, help="Model prefix: writes PREFIX.model and PREFIX.vocab."),
    vocab_size: int = typer.Option(8000, help="Target vocabulary size (user-defined symbols included)."),
) -> None:
    """Train the SentencePiece unigram model of the tokenizer stage."""
    path = train(out, vocab_size)
    typer.echo(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(corpus_lines())} corpus lines)")


if __name__ == "__main__":
    typer.run(main)
