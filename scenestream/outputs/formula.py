"""The scene as one line, and that line back.

    from scenestream.outputs.formula import format_formula, parse_formula

    line = format_formula(scene)
    # 'Δ41 = дрожь ⊗ тишина → вход | body 0.42 + philosopher 0.55 | ρ 0.85 🫁'
    formula = parse_formula(line)
    formula.delta_code, formula.concepts, formula.registers, formula.resonance, formula.symbol
    # 'Δ41', ('дрожь', 'тишина', 'вход'), (('body', 0.42), ('philosopher', 0.55)), 0.85, '🫁'
    str(formula) == line                 # a Formula writes itself back as the same line

The line holds the scene's Δ-code, the concepts of its linkage, its *active*
registers (weight at or above :data:`ACTIVE_WEIGHT`, the scene builder's own
threshold, in the scene's ranked order), its resonance and its symbol. Weights
and resonance are written with two decimals, so they come back rounded.

Grammar (EBNF; the formatter writes exactly the spaces shown, the parser also
takes more or fewer spaces around ``=``, ``|``, ``⊗``, ``→`` and ``+``)::

    formula   = delta, " = ", linkage, " | ", registers, " | ", "ρ ", number, [ " ", symbol ] ;
    delta     = "Δ", digit, { digit } ;
    linkage   = "∅"                                                  (* no concept *)
              | concept                                              (* one concept *)
              | concept, " ⊗ ", concept                              (* two: joined, leading nowhere yet *)
              | concept, " ⊗ ", concept, { " ⊗ ", concept }, " → ", concept ;
                                                  (* three or more: the last is what the join leads to *)
    registers = register, " ", number, { " + ", register, " ", number } ;
    register  = lower, { lower | digit | "_" | "-" } ;               (* any name: registers are data *)
    number    = digit, [ ".", digit, { digit } ] ;                   (* 0 ≤ number ≤ 1 *)
    concept   = text without "⊗", "→", "|", "·" or a line break, neither blank nor "∅",
                without leading or trailing space ;
    symbol    = text without whitespace or "|" ;                     (* an emoji *)

So a linkage of fewer than three concepts is written with what there is
(``тишина ⊗ вход``, ``тишина``, ``∅``), and the line always names at least one
register: when no weight reaches the threshold, the scene's own register (the
one the builder lets answer anyway) is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scenestream.agents.scene.transform import ACTIVE_WEIGHT
from scenestream.schemas.records import RegisterWeight, Scene

JOIN = "⊗"
LEADS = "→"
NO_CONCEPT = "∅"
RESONANCE = "ρ"
LINKAGE_SEPARATOR = "·"  # how the scene builder joins the concepts of a linkage

_DELTA = re.compile(r"Δ\d+")
_REGISTER_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_NUMBER = re.compile(r"\d(?:\.\d+)?")
_REGISTER = re.compile(r"(?P<name>\S+)\s+(?P<weight>\S+)")
_RESONANCE = re.compile(rf"{RESONANCE}\s+(?P<value>\S+)(?:\s+(?P<symbol>\S+))?")
# the characters that separate the parts of a line, so no concept may hold them
_RESERVED = (JOIN, LEADS, "|", LINKAGE_SEPARATOR, "\n", "\r")


@dataclass(frozen=True)
class Formula:
    """A scene's one-line formula: its parts, validated (so ``str(formula)`` always parses back).

    ``concepts`` and ``registers`` are tuples (``registers`` as ``(name, weight)`` pairs, ranked);
    lists given to the constructor are turned into tuples. Invalid parts raise ValueError.
    """

    delta_code: str
    concepts: tuple[str, ...]
    registers: tuple[tuple[str, float], ...]
    resonance: float
    symbol: str | None = None

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__, once, here
        object.__setattr__(self, "concepts", tuple(self.concepts))
        object.__setattr__(self, "registers", tuple((name, float(weight)) for name, weight in self.registers))
        object.__setattr__(self, "resonance", float(self.resonance))
        if not _DELTA.fullmatch(self.delta_code):
            raise ValueError(f"Δ-code {self.delta_code!r} is not 'Δ' followed by digits")
        for concept in self.concepts:
            _check_concept(concept)
        if not self.registers:
            raise ValueError("a formula names at least one register")
        for name, weight in self.registers:
            if not _REGISTER_NAME.fullmatch(name):
                raise ValueError(f"register name {name!r} is not [a-z][a-z0-9_-]*")
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"weight {weight} of register {name!r} is outside 0..1")
        if not 0.0 <= self.resonance <= 1.0:
            raise ValueError(f"resonance {self.resonance} is outside 0..1")
        if self.symbol is not None and (not self.symbol or any(c.isspace() or c == "|" for c in self.symbol)):
            raise ValueError(f"symbol {self.symbol!r} is empty or holds whitespace or '|'")

    @classmethod
    def from_scene(cls, scene: Scene, threshold: float = ACTIVE_WEIGHT) -> Formula:
        """The formula of ``scene``: weights and resonance rounded to two decimals, as the line writes them."""
        concepts = [c.strip() for c in scene.linkage.split(LINKAGE_SEPARATOR) if c.strip()]
        return cls(
            delta_code=scene.delta_code,
            concepts=tuple(concepts),
            registers=tuple((r.name, round(r.weight, 2)) for r in _active(scene, threshold)),
            resonance=round(scene.resonance, 2),
            symbol=scene.symbol or None,
        )

    def __str__(self) -> str:
        registers = " + ".join(f"{name} {weight:.2f}" for name, weight in self.registers)
        tail = f"{RESONANCE} {self.resonance:.2f}" + (f" {self.symbol}" if self.symbol else "")
        return f"{self.delta_code} = {_linkage_text(self.concepts)} | {registers} | {tail}"


def _active(scene: Scene, threshold: float) -> list[RegisterWeight]:
    # as the builder's active_registers: every register at or above the threshold, else the scene's own one
    if not scene.registers:
        raise ValueError(f"scene {scene.scene_id!r} has no registers")
    active = [r for r in scene.registers if r.weight >= threshold]
    if active:
        return active
    own = [r for r in scene.registers if r.name == scene.register]
    return own or [max(scene.registers, key=lambda r: r.weight)]


def format_formula(scene: Scene, threshold: float = ACTIVE_WEIGHT) -> str:
    """The scene as one line (see the module's grammar); ValueError when a part cannot be written."""
    return str(Formula.from_scene(scene, threshold))


def parse_formula(line: str) -> Formula:
    """A formula line back into its parts; ValueError naming what is wrong with a malformed line."""
    text = line.strip()
    if "\n" in text or "\r" in text:
        raise ValueError("a formula is one line")
    head, eq, rest = text.partition("=")
    if not eq:
        raise ValueError(f"no '=' after the Δ-code in {line!r}")
    delta_code = head.strip()
    if not _DELTA.fullmatch(delta_code):
        raise ValueError(f"Δ-code {delta_code!r} is not 'Δ' followed by digits")
    sections = [s.strip() for s in rest.split("|")]
    if len(sections) != 3:
        raise ValueError(f"expected 'linkage | registers | ρ resonance' after '=', got {len(sections)} section(s)")
    linkage, registers, resonance = sections
    match = _RESONANCE.fullmatch(resonance)
    if not match:
        raise ValueError(f"resonance section {resonance!r} is not '{RESONANCE} <number> [symbol]'")
    return Formula(
        delta_code=delta_code,
        concepts=_parse_linkage(linkage),
        registers=_parse_registers(registers),
        resonance=_parse_number(match["value"], "resonance"),
        symbol=match["symbol"],
    )


def _check_concept(concept: str) -> None:
    if not concept.strip() or concept != concept.strip() or concept == NO_CONCEPT:
        raise ValueError(f"concept {concept!r} is blank, '∅' or has leading/trailing space")
    for char in _RESERVED:
        if char in concept:
            raise ValueError(f"concept {concept!r} holds {char!r}, which separates the parts of a formula")


def _linkage_text(concepts: tuple[str, ...]) -> str:
    if not concepts:
        return NO_CONCEPT
    if len(concepts) <= 2:
        return f" {JOIN} ".join(concepts)
    return f" {JOIN} ".join(concepts[:-1]) + f" {LEADS} " + concepts[-1]


def _parse_linkage(linkage: str) -> tuple[str, ...]:
    if linkage == NO_CONCEPT:
        return ()
    if not linkage:
        raise ValueError(f"linkage is empty (write '{NO_CONCEPT}' for no concept)")
    joined, leads, outcome = linkage.partition(LEADS)
    parts = [p.strip() for p in joined.split(JOIN)]
    if leads:
        if LEADS in outcome:
            raise ValueError(f"linkage {linkage!r} has more than one '{LEADS}'")
        if len(parts) < 2:
            raise ValueError(f"linkage {linkage!r}: '{LEADS}' follows a join of at least two concepts ('a ⊗ b → c')")
        parts.append(outcome.strip())
    for part in parts:
        if not part:
            raise ValueError(f"linkage {linkage!r} has an empty concept")
    return tuple(parts)


def _parse_registers(section: str) -> tuple[tuple[str, float], ...]:
    if not section:
        raise ValueError("registers section is empty (a formula names at least one register)")
    registers = []
    for item in section.split("+"):
        match = _REGISTER.fullmatch(item.strip())
        if not match:
            raise ValueError(f"register {item.strip()!r} is not '<name> <weight>'")
        name = match["name"]
        if not _REGISTER_NAME.fullmatch(name):
            raise ValueError(f"register name {name!r} is not [a-z][a-z0-9_-]*")
        registers.append((name, _parse_number(match["weight"], f"weight of register {name!r}")))
    return tuple(registers)


def _parse_number(text: str, what: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not a number like 0.42")
    value = float(text)
    if value > 1.0:
        raise ValueError(f"{what} {text} is outside 0..1")
    return value
