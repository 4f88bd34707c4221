"""Router-filtered answers sampled from an adapter: more training examples in a register's voice.

    scenestream sample-answers --register logician      # → data/decoder/sampled/logician.jsonl
    scenestream train --register logician --router-agreed --with-sampled

The corpus's own answers teach a register's voice only as plainly as they
speak it: the scene builder's router reads about a third of the logician's
reference answers as another register, because it also hears topic (an
answer about sleep reads as body). Sampling fixes the imbalance from the
adapter itself (rejection sampling, as in STaR / ReST): the adapter answers
many *training* texts, and only answers that

* the router assigns to the register with at least ``min_weight``,
* are finished (the model stopped on its own, within ``max_new_tokens``),
* are in the text's language,
* do not loop (repeated word n-grams), and
* cite no source (``agents/decoder/answers.py``'s ``invented_sources``: the router reads citations as
  "logical", so the first rounds kept "[1]" and "according to research"), and
* carry no markup (tags such as ``<math class="unit-simple">``: the shipped ``sampled/logician.jsonl``,
  made before this check, has 181 rows with them, one reason no shipped adapter is trained on it)

are kept, at most ``keep_per_text`` per text, the router's most confident
first. Each kept row also records its ``topic``: the register the router reads the *text* as.
``train --max-sampled N`` takes N of them spread evenly over topics and languages, the router's
surest first within each (the N surest of all would mostly answer texts about the register's own
topic; the held-out prompts ask about everything).
The texts: the train split of every register's decoder corpus and of
``data/registers``, minus every text of any test split, so the held-out
prompts of ``scenestream bench quality`` are never seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from scenestream.agents.decoder.answers import invented_sources, language_of, loops, markup
from scenestream.schemas.codec import read_jsonl
from scenestream.schemas.registers import catalogue

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLED = ROOT / "data" / "decoder" / "sampled"


@dataclass(frozen=True)
class SampleConfig:
    register: str
    per_text: int = 2  # sampled answers per text
    keep_per_text: int = 1
    temperature: float = 0.8
    max_new_tokens: int = 160
    min_weight: float = 0.5  # the router's weight for the register, at least


def training_texts(root: Path = ROOT) -> list[dict]:
    """Every train-split text of the decoder corpora and of data/registers, ``{text, lang}``, in a fixed order,
    without duplicates and without any text that some test split holds."""
    rows = [row for path in sorted((root / "data" / "decoder").glob("*.jsonl")) for row in read_jsonl(path)]
    rows += [row for path in sorted((root / "data" / "registers").glob("*.jsonl")) for row in read_jsonl(path)]
    held_out = {row["text"].strip() for row in rows if row["split"] != "train"}
    seen: set[str] = set()
    texts = []
    for row in rows:
        text = row["text"].strip()
        if row["split"] == "train" and text not in held_out and text not in seen:
            seen.add(text)
            texts.append({"text": text, "lang": row["lang"]})
    return texts


def acceptable(answer: str, lang: str, finished: bool) -> Optional[str]:
    """Why a sampled answer is refused before the router reads it, or None when it may be kept."""
    if not finished:
        return "unfinished"
    if len(answer.split()) < 5:
        return "too short"
    if language_of(answer) != lang:
        return "wrong language"
    if loops(answer):
        return "loops"
    if invented_sources(answer):  # a 270M model cites nothing it can know (agents/decoder/answers.py's patterns)
        return "invented sources"
    if markup(answer):
        return "markup"
    return None


def select(
    candidates: Sequence[dict], register: str, weights: Sequence[float], registers: Sequence[str], cfg: SampleConfig
) -> list[dict]:
    """The candidates the router assigns to ``register`` with at least ``cfg.min_weight``, at most
    ``cfg.keep_per_text`` per text (the highest weights first), in the candidates' order."""
    best: dict[str, list[tuple[float, int]]] = {}
    for i, (cand, weight, read) in enumerate(zip(candidates, weights, registers)):
        if read == register and weight >= cfg.min_weight:
            best.setdefault(cand["text"], []).append((weight, -i))
    kept = sorted(-i for per in best.values() for _w, i in sorted(per, reverse=True)[: cfg.keep_per_text])
    return [{**candidates[i], "router_weight": round(weights[i], 4)} for i in kept]


def sample_answers(
    cfg: SampleConfig, engine, texts: Iterable[dict], batch: int = 64, on_batch: Callable[[int], None] = lambda n: None
) -> tuple[list[dict], dict]:
    """Sample ``cfg.per_text`` answers per text from ``engine`` with the register's adapter; returns the kept
    rows (``{id, lang, text, answer, split: "train", source: "sampled", router_weight, topic}``) and counts of
    what was refused and why."""
    from scenestream.agents.decoder.engines import Request
    from scenestream.agents.decoder.prompt import clean_answer
    from scenestream.training.examples import prompts_for, router_reading

    if cfg.register not in catalogue():
        raise ValueError(catalogue().unknown(cfg.register))
    if cfg.register not in engine.adapters:
        raise RuntimeError(
            f"the engine has no {cfg.register} adapter to sample from (adapters: {sorted(engine.adapters) or 'none'})"
        )
    texts = list(texts)
    prompts = [
        p for p, _ in prompts_for([{"id": f"t{i}", "answer": "", **t} for i, t in enumerate(texts)], cfg.register)
    ]
    jobs = [(i, prompts[i]) for i in range(len(texts)) for _ in range(cfg.per_text)]
    candidates: list[dict] = []
    refused: dict[str, int] = {}
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        for (i, _prompt), gen in zip(chunk, engine.generate([Request(p, cfg.register) for _, p in chunk])):
            answer = clean_answer(gen.text)
            finished = gen.completion_tokens < cfg.max_new_tokens or answer != gen.text.strip()
            why = acceptable(answer, texts[i]["lang"], finished)
            if why:
                refused[why] = refused.get(why, 0) + 1
            else:
                candidates.append({"text": texts[i]["text"], "lang": texts[i]["lang"], "answer": answer})
        on_batch(len(chunk))
    reads, weights = router_reading([c["answer"] for c in candidates]) if candidates else ([], [])
    kept = select(candidates, cfg.register, [w[cfg.register] for w in weights], reads, cfg)
    refused["router"] = len(candidates) - len(kept)
    rows = [
        {
            "id": f"{cfg.register}-sampled-{k + 1:04d}",
            "lang": row["lang"],
            "text": row["text"],
            "answer": row["answer"],
            "split": "train",
            "source": "sampled",
            "router_weight": row["router_weight"],
        }
        for k, row in enumerate(kept)
    ]
    rows = with_topics(rows)
    return rows, {"texts": len(texts), "sampled": len(jobs), "kept": len(rows), "refused": refused}


def sampled_path(register: str, root: Path = SAMPLED) -> Path:
    return root / f"{register}.jsonl"


def write_rows(rows: Sequence[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def spread_choice(rows: Sequence[dict], most: int) -> list[int]:
    """The indices of ``most`` rows, taken in turn from each (topic, language) group, the router's surest
    first within a group; a group that runs out leaves its turns to the others. The N surest of all
    would mostly answer texts *about* the register's own topic (a logician's surest answers are to
    arithmetic questions), while the held-out prompts ask about everything."""
    groups: dict[tuple, list[int]] = {}
    for i in surest_first(rows):
        groups.setdefault((rows[i]["topic"], rows[i]["lang"]), []).append(i)
    queues = [groups[key] for key in sorted(groups)]
    chosen: list[int] = []
    while len(chosen) < most and any(queues):
        for queue in queues:
            if queue and len(chosen) < most:
                chosen.append(queue.pop(0))
    return chosen


def load_sampled(path: Path, register: str, most: Optional[int] = None, spread: bool = True) -> list[dict]:
    """The sampled rows in ``path`` (each must be a train row of ``register``'s sampling), in the file's
    order; with ``most``, only that many: spread over the texts' topics and languages (``spread_choice``),
    or, with ``spread=False``, simply those with the highest router weight. A row without its ``topic``
    (files written before it was recorded) gets it from the router here."""
    if not path.exists():
        raise FileNotFoundError(
            f"no sampled answers for {register}: {path} (make them with "
            f"`scenestream sample-answers --register {register}`)"
        )
    rows = read_jsonl(path)
    wrong = [
        row.get("id")
        for row in rows
        if row.get("split") != "train"
        or not str(row.get("id", "")).startswith(f"{register}-sampled-")
        or not row.get("answer")
    ]
    if wrong:
        raise ValueError(f"{path}: {len(wrong)} row(s) are not sampled {register} train rows, e.g. {wrong[:3]}")
    if most is None:
        return rows
    if spread:
        rows = with_topics(rows)
    chosen = spread_choice(rows, most) if spread else surest_first(rows)[:most]
    return [rows[i] for i in sorted(chosen)]


def surest_first(rows: Sequence[dict]) -> list[int]:
    """The indices of ``rows``, the highest router weight first (the file's order among equals)."""
    return sorted(range(len(rows)), key=lambda i: (-rows[i].get("router_weight", 0.0), i))


def with_topics(rows: list[dict]) -> list[dict]:
    """``rows`` with ``topic``: the register the router reads each row's *text* (the question) as."""
    known = catalogue()
    missing = sorted({row["text"] for row in rows if row.get("topic") not in known})
    if not missing:
        return rows
    from scenestream.training.examples import router_reading

    topic = dict(zip(missing, router_reading(missing)[0]))
    return [row if row.get("topic") in known else {**row, "topic": topic[row["text"]]} for row in rows]
