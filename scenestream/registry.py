"""Registers that change while the stack runs.

``scenestream register publish NAME`` sends the register as its file now
declares it (with its adapter's folder and version) to the compacted
``registers`` topic; ``register remove NAME`` sends its removal. Every worker
whose stages care (decoders, scene builders) runs one :class:`RegisterWatcher`:
it reads the whole topic at start and then follows it, applies each change to
the process's catalogue (:func:`scenestream.schemas.registers.use`) and tells
the stages' handlers, which load the adapter in place (decoders) or stop
routing to a removed register (scene builders), without a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol

from scenestream.schemas.codec import SchemaError, decode
from scenestream.schemas.records import RegisterChange
from scenestream.schemas.registers import (
    WEIGHT_FILES,
    Catalogue,
    CatalogueError,
    catalogue,
    read_register,
    use,
    version_of,
)
from scenestream.settings import Settings

log = logging.getLogger(__name__)


class Listener(Protocol):
    def registers_changed(self, registers: Catalogue) -> None:
        """The catalogue changed (called off the event loop)."""


def store_dir(settings: Settings) -> Path:
    """Where every published adapter version is kept, one folder per version (``name@hash``), never changed:
    decoders load a published version from here, and ``replay --versions answered`` finds old ones here."""
    return Path(settings.data_dir) / "adapter-store"


def kept(name: str, folder: Path, version: str, settings: Settings) -> Path:
    """The store's copy of ``folder``'s adapter (``version``), made the first time it is published."""
    target = store_dir(settings) / version
    if target.is_dir() and version_of(name, target) == version:
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for file in WEIGHT_FILES:
        if (Path(folder) / file).exists():
            shutil.copy2(Path(folder) / file, partial / file)
    if version_of(name, partial) != version:
        shutil.rmtree(partial)
        raise CatalogueError(f"{folder} changed while it was being published: publish it again")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def find_version(version: str, settings: Settings) -> Optional[Path]:
    """The folder with the weights of adapter ``version`` (``name@hash``): the register's own folder when it
    still holds them, else the store's copy; None when neither does."""
    name = version.split("@", 1)[0]
    known = catalogue()
    if name in known and known[name].adapter_version(settings.adapters_dir) == version:
        return known[name].adapter_folder(settings.adapters_dir)
    target = store_dir(settings) / version
    if target.is_dir() and version_of(name, target) == version:
        return target
    return None


def change_of(name: str, settings: Settings, removed: bool = False) -> RegisterChange:
    """The change that announces register ``name`` as the catalogue now declares it (or its removal); its
    adapter is copied into the store (:func:`kept`) and announced from there, so the weights a version names
    never change under it."""
    if removed:
        return RegisterChange(name=name, removed=True)
    decl = catalogue()[name]
    version = decl.adapter_version(settings.adapters_dir)
    folder = decl.adapter_folder(settings.adapters_dir)
    return RegisterChange(
        name=name,
        file=str(decl.source),
        adapter=str(kept(name, folder, version, settings)) if version else None,
        adapter_version=version,
    )


def applied(registers: Catalogue, change: RegisterChange) -> Catalogue:
    """``registers`` with ``change`` made; a :class:`CatalogueError` when the change cannot be made (its file
    is not readable here, or the weights in its adapter folder are not the version it announces)."""
    rest = [d for d in registers if d.name != change.name]
    if change.removed:
        if len(rest) == len(registers.registers):
            return registers
        return Catalogue(tuple(rest), registers.folders)
    decl = read_register(Path(change.file))
    if decl.name != change.name:
        raise CatalogueError(f"{change.file} declares {decl.name!r}, the change is for {change.name!r}")
    if change.adapter_version:
        folder = Path(change.adapter)
        found = version_of(decl.name, folder)
        if found != change.adapter_version:
            raise CatalogueError(
                f"{folder} holds {found}, the change announces {change.adapter_version}: publish the register again"
            )
        decl = dataclasses.replace(decl, adapter=folder)
    ordered = sorted([*rest, decl], key=lambda d: (d.order, d.name))
    return Catalogue(tuple(ordered), registers.folders)


async def publish(settings: Settings, change: RegisterChange) -> None:
    from scenestream.client import produce
    from scenestream.topics import REGISTER_CHANGES, create_topics

    await create_topics(settings, [REGISTER_CHANGES])
    await produce(settings, REGISTER_CHANGES, [change])


class RegisterWatcher:
    """Reads the ``registers`` topic whole, then follows it; each change applied to this process's catalogue
    and handed to every listener. A change that cannot be applied is logged and skipped (the catalogue stays
    as it was); a listener that fails is logged, and the others still hear of the change."""

    def __init__(self, settings: Settings, listeners: Iterable[Listener]) -> None:
        self.settings = settings
        self.listeners = list(listeners)
        self.applied = 0

    async def report(self) -> None:
        """Send what the listeners that serve adapters serve now to ``decoder-status`` (one record per worker)."""
        import os
        import socket

        from scenestream.client import produce
        from scenestream.schemas.records import DecoderStatus
        from scenestream.topics import DECODER_STATUS

        for listener in self.listeners:
            loaded = getattr(listener, "loaded", None)
            if not callable(loaded):
                continue
            engine = getattr(getattr(getattr(listener, "decoder", None), "engine", None), "name", "?")
            status = DecoderStatus(worker=f"{socket.gethostname()}:{os.getpid()}", engine=engine, adapters=loaded())
            try:
                await produce(self.settings, DECODER_STATUS, [status])
            except Exception as exc:  # the status is a report: the stage goes on without it
                log.warning("the decoder status was not sent: %s", exc)

    async def run(self) -> None:
        from scenestream.client import read_topics
        from scenestream.topics import REGISTER_CHANGES

        await self.report()
        topic = REGISTER_CHANGES.full_name(self.settings)
        async for record in read_topics(self.settings, [topic], follow=True):
            try:
                change = decode(record.value, RegisterChange)
            except SchemaError as exc:
                log.warning("%s: unreadable register change at offset %s: %s", topic, record.offset, exc)
                continue
            await self.apply(change)

    async def apply(self, change: RegisterChange) -> None:
        try:
            new = applied(catalogue(), change)
        except CatalogueError as exc:
            log.error("register change of %s refused: %s", change.name, exc)
            return
        if new is catalogue():
            return
        use(new)
        self.applied += 1
        what = "removed" if change.removed else f"now {change.adapter_version or 'without an adapter'}"
        log.info("register %s %s; registers: %s", change.name, what, ", ".join(new.names))
        for listener in self.listeners:
            try:
                await asyncio.to_thread(listener.registers_changed, new)
            except Exception:
                log.exception("%s could not take the change of register %s", type(listener).__name__, change.name)
        await self.report()


async def stack_catalogue(settings: Settings) -> Catalogue:
    """This process's catalogue with every change on the stack's ``registers`` topic made, as its workers have
    it (a change that cannot be made here is left out, as a worker leaves it out)."""
    from scenestream.client import read_topics
    from scenestream.topics import REGISTER_CHANGES

    registers = catalogue()
    async for record in read_topics(settings, [REGISTER_CHANGES.full_name(settings)]):
        try:
            registers = applied(registers, decode(record.value, RegisterChange))
        except (SchemaError, CatalogueError) as exc:
            log.warning("register change at offset %s left out: %s", record.offset, exc)
    return registers


async def decoder_statuses(settings: Settings) -> list:
    """The latest :class:`DecoderStatus` of every decoder worker that reported one (a stopped worker's stays,
    with its time)."""
    from scenestream.client import read_topics
    from scenestream.schemas.records import DecoderStatus
    from scenestream.topics import DECODER_STATUS

    latest: dict[str, Any] = {}
    async for record in read_topics(settings, [DECODER_STATUS.full_name(settings)]):
        try:
            status = decode(record.value, DecoderStatus)
        except SchemaError:
            continue
        latest[status.worker] = status
    return sorted(latest.values(), key=lambda s: s.worker)


def watch(app: Any, settings: Settings, handlers: Iterable[Any]) -> None:
    """Run a :class:`RegisterWatcher` in ``app`` (a faust app): every worker follows the changes, since every
    stage validates the register names of the records it reads; ``handlers`` that listen hear of each."""
    listeners = [h for h in handlers if callable(getattr(h, "registers_changed", None))]
    watcher = RegisterWatcher(settings, listeners)

    async def follow_register_changes() -> None:
        try:
            await watcher.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # the stages go on with the catalogue they have; say so loudly
            log.exception("the register watcher stopped: register changes are no longer followed")

    app.task(follow_register_changes)
