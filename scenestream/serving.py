"""``scenestream serve`` started in its own process and stopped again: what the serve tests and benchmarks share.

    from scenestream.serving import serve_process

    with serve_process(data_dir, env={"SCENESTREAM_ENGINE": "transformers"}) as served:
        httpx.get(f"{served.url}/v1/models")   # ready: /readyz answered 200
        served.ready_s                         # seconds from the start to ready

With no ``SCENESTREAM_BROKER`` (it is removed from the environment) serve starts the embedded broker and every
stage itself, in ``data_dir``. Its output goes to ``data_dir/serve.log``, which the errors name. The process is
stopped with SIGINT (as Ctrl-C: the broker and stages with it), killed when it does not stop in 30 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional


@dataclass
class Served:
    url: str
    data: Path
    proc: subprocess.Popen
    ready_s: float
    log: Path


def wait_ready(
    url: str,
    timeout: float,
    proc: Optional[subprocess.Popen] = None,
    log: Optional[Path] = None,
    ready: Callable[[Any], bool] = lambda response: response.status_code == 200,
) -> None:
    """Until ``url``'s ``/readyz`` answers 200 (or as ``ready`` says of its response); RuntimeError when ``proc``
    exits first, TimeoutError after ``timeout`` s (both name ``log``)."""
    import httpx

    where = f"; its log: {log}" if log is not None else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}{where}")
        with contextlib.suppress(httpx.HTTPError):
            if ready(httpx.get(f"{url}/readyz", timeout=2)):
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready within {timeout:.0f}s{where}")


@contextlib.contextmanager
def serve_process(
    data: Path,
    env: Optional[Mapping[str, str]] = None,
    ready_timeout: float = 240.0,
    drop: tuple[str, ...] = (),
) -> Iterator[Served]:
    """``scenestream serve`` on a free loopback port with this process's environment, ``env`` over it, and the
    variables in ``drop`` (and ``SCENESTREAM_BROKER``) removed; yields once it is ready."""
    from scenestream.broker import free_port

    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environ = {**os.environ, "SCENESTREAM_DATA_DIR": str(data), **(env or {})}
    for name in ("SCENESTREAM_BROKER", *drop):
        environ.pop(name, None)
    log_path = data / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenestream", "serve", "--port", str(port)], env=environ, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, ready_timeout, proc, log_path)
        yield Served(url, data, proc, round(time.perf_counter() - started, 1), log_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def worker_env(settings: Any, **overrides: str) -> dict[str, str]:
    """This process's environment with ``settings``' broker, topic prefix, app id and data folder, so a
    ``scenestream run`` worker joins that stack; ``overrides`` (``SCENESTREAM_…`` names) on top."""
    env = dict(os.environ)
    env.update(
        SCENESTREAM_BROKER=str(settings.broker),
        SCENESTREAM_TOPIC_PREFIX=settings.topic_prefix,
        SCENESTREAM_APP_ID=settings.app_id,
        SCENESTREAM_DATA_DIR=str(settings.data_dir),
    )
    env.update(overrides)
    return env


def spawn_worker(stages: str, env: Mapping[str, str], log: Any) -> subprocess.Popen:
    """``scenestream run --stages STAGES`` in its own process group (a SIGKILL of the group takes its engine's
    process too), its output to the open file ``log`` (a pipe nobody reads would stall it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "scenestream", "run", "--stages", stages],
        env=dict(env),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the worker's process group, SIGKILL when it has not stopped within ``timeout`` s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
