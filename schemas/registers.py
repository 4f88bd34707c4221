"""The register catalogue: every register scenestream knows, declared as data.

A register is the voice one LoRA adapter answers in and the symbol a scene in
it compresses into. Each is one TOML file (``registers/poet.toml`` is the
documented example): its name, symbol, descriptions in Russian and English,
its adapter's folder, and its examples (texts with answers for the adapter,
labelled texts for the scene router). The catalogue is the shipped folder
``registers/`` plus the folders on ``SCENESTREAM_REGISTERS_PATH`` (separated by
``:``), read in that order; a later file with the same name replaces the
earlier one, so a user can point a shipped register at their own adapter
without editing the project.

    from scenestream.schemas.registers import catalogue
    catalogue().names                 # ("poet", "logician", "body", "philosopher", ...)
    catalogue()["poet"].symbol        # "🪶"
    catalogue()["poet"].adapter_version()   # "poet@1a2b3c4d5e6f": name + content hash of its weights

Records validate register names against :func:`catalogue` at the moment they
are read, so a record naming a register this stack does not know is refused
(and dead-lettered by the stage that read it). :func:`use` swaps the process's
catalogue when registers change while it runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SHIPPED = Path(__file__).resolve().parent.parent / "registers"
PATH_VARIABLE = "SCENESTREAM_REGISTERS_PATH"
NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
RESERVED = frozenset({"base", "scenestream", "auto", "none"})  # names with another meaning in the API or engines
WEIGHT_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


class CatalogueError(ValueError):
    """A register file that cannot be used, or a catalogue that does not hold together."""


class _Examples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decoder: list[str] = Field(default_factory=list)
    router: list[str] = Field(default_factory=list)


class _Description(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ru: str = Field(min_length=1)
    en: str = Field(min_length=1)


class _RegisterFile(BaseModel):
    """What one register file may hold (anything else is an error, so a typo is not silently ignored)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    symbol: str = Field(min_length=1, max_length=8)
    order: int = 100
    adapter: Optional[str] = None
    description: _Description
    examples: _Examples = Field(default_factory=_Examples)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_name(name)


def check_name(name: str) -> str:
    """``name`` when it may name a register; a :class:`CatalogueError` saying why not otherwise."""
    if not NAME.match(name):
        raise CatalogueError(
            f"register name {name!r}: 2-32 characters, lowercase latin letters, digits and _, starting with a letter"
        )
    if name in RESERVED:
        raise CatalogueError(f"register name {name!r} is reserved ({', '.join(sorted(RESERVED))})")
    return name


@dataclass(frozen=True)
class RegisterDecl:
    """One register as its file declares it (paths resolved against the file's folder)."""

    name: str
    symbol: str
    description: dict[str, str]
    adapter: Optional[Path]
    decoder_examples: tuple[Path, ...]
    router_examples: tuple[Path, ...]
    source: Path
    order: int = 100

    @property
    def shipped(self) -> bool:
        return self.source.parent == SHIPPED

    def adapter_folder(self, adapters_dir: Optional[Path] = None) -> Optional[Path]:
        """Its adapter's folder: ``adapters_dir/<name>`` when that folder is given, else the declared one."""
        return Path(adapters_dir) / self.name if adapters_dir is not None else self.adapter

    def adapter_version(self, adapters_dir: Optional[Path] = None) -> Optional[str]:
        """``name@hash``: the content hash of its adapter's weights and config, or None without an adapter."""
        folder = self.adapter_folder(adapters_dir)
        if folder is None or not (folder / "adapter_config.json").exists():
            return None
        return version_of(self.name, folder)


def version_of(name: str, folder: Path) -> str:
    """``name@<12 hex>``: the SHA-256 of an adapter folder's config and weight files (not its README or
    training notes), so the same weights always get the same version and different weights never do."""
    digest = hashlib.sha256()
    found = False
    for file in WEIGHT_FILES:
        path = Path(folder) / file
        if path.exists():
            found = True
            digest.update(file.encode() + b"\0")
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    if not found:
        raise CatalogueError(f"{folder}: no adapter files ({', '.join(WEIGHT_FILES)})")
    return f"{name}@{digest.hexdigest()[:12]}"


def read_register(path: Path) -> RegisterDecl:
    """One register file, checked; a :class:`CatalogueError` naming the file and the problem otherwise."""
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        spec = _RegisterFile.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError, CatalogueError) as exc:
        raise CatalogueError(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise CatalogueError(f"{path}: {problems}") from None
    if spec.name != path.stem:
        raise CatalogueError(f"{path}: declares register {spec.name!r}; the file must be named {spec.name}.toml")
    here = path.parent

    def resolve(items: Iterable[str]) -> tuple[Path, ...]:
        return tuple((here / item).resolve() for item in items)

    return RegisterDecl(
        name=spec.name,
        symbol=spec.symbol,
        description=spec.description.model_dump(),
        adapter=(here / spec.adapter).resolve() if spec.adapter else None,
        decoder_examples=resolve(spec.examples.decoder),
        router_examples=resolve(spec.examples.router),
        source=path,
        order=spec.order,
    )


@dataclass(frozen=True)
class Catalogue:
    """The registers of one stack, in listing order (``order``, then name)."""

    registers: tuple[RegisterDecl, ...]
    folders: tuple[Path, ...] = field(default=())

    @classmethod
    def load(cls, folders: Sequence[Path]) -> Catalogue:
        """Every ``*.toml`` of ``folders`` (a later folder's file replaces an earlier one of the same name)."""
        found: dict[str, RegisterDecl] = {}
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                raise CatalogueError(f"register folder {folder} does not exist ({PATH_VARIABLE})")
            for path in sorted(folder.glob("*.toml")):
                decl = read_register(path)
                found[decl.name] = decl
        if not found:
            raise CatalogueError(f"no registers in {', '.join(map(str, folders))}")
        ordered = tuple(sorted(found.values(), key=lambda d: (d.order, d.name)))
        return cls(ordered, tuple(Path(f) for f in folders))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.registers)

    @property
    def symbols(self) -> dict[str, str]:
        return {d.name: d.symbol for d in self.registers}

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self) -> Iterator[RegisterDecl]:
        return iter(self.registers)

    def __len__(self) -> int:
        return len(self.registers)

    def __getitem__(self, name: str) -> RegisterDecl:
        for decl in self.registers:
            if decl.name == name:
                return decl
        raise KeyError(self.unknown(name))

    def unknown(self, name: str) -> str:
        """The message for a register this catalogue lacks."""
        return f"unknown register {name!r}: this stack's registers are {', '.join(self.names)}"


def folders_from(path: Optional[str], data_dir: Optional[Path] = None) -> tuple[Path, ...]:
    """The shipped folder, ``data_dir/registers`` when it exists (where ``scenestream register add`` writes
    without a path), then the folders of a ``SCENESTREAM_REGISTERS_PATH`` value."""
    extra = [Path(p).expanduser() for p in (path or "").split(os.pathsep) if p.strip()]
    added = [Path(data_dir) / "registers"] if data_dir is not None and (Path(data_dir) / "registers").is_dir() else []
    return (SHIPPED, *[f for f in added if f not in extra], *extra)


def user_folder(path: Optional[str], data_dir: Path) -> Path:
    """Where a new register's files go: the first folder of ``SCENESTREAM_REGISTERS_PATH``, else
    ``data_dir/registers``."""
    extra = [Path(p).expanduser() for p in (path or "").split(os.pathsep) if p.strip()]
    return extra[0] if extra else Path(data_dir) / "registers"


_lock = threading.Lock()
_active: Optional[Catalogue] = None


def catalogue() -> Catalogue:
    """This process's catalogue: loaded on first use from the shipped folder and ``SCENESTREAM_REGISTERS_PATH``
    (read through the settings object), or whatever :func:`use` installed since."""
    global _active
    if _active is None:
        with _lock:
            if _active is None:
                from scenestream.settings import Settings

                settings = Settings()
                _active = Catalogue.load(folders_from(settings.registers_path, settings.data_dir))
    return _active


def use(new: Optional[Catalogue]) -> Optional[Catalogue]:
    """Make ``new`` this process's catalogue (None: load it again on next use); returns the one it replaced."""
    global _active
    with _lock:
        old, _active = _active, new
    return old
