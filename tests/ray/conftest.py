"""A real local Ray cluster for the session: a head and a worker node, each its own `ray start`
process tree on 127.0.0.1 with 1 CPU, torn down after the tests.

`ray start --block` keeps each node's launcher in the foreground, in its own session, so teardown
signals exactly these process groups (never `ray stop`, which stops every Ray on the machine),
then kills by pid anything left that names this cluster's temp dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"
_START_TIMEOUT_S = 180  # a node starts in ~12 s on an idle 2-core machine; CI may be busier


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_node(args: list[str], log: Path, env: dict[str, str], attempts: int = 3) -> subprocess.Popen:
    """`ray start --block ARGS`, ready; retried because Ray gives a node a fixed 30 s to register
    with the head, which a loaded CI machine can miss."""
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(args, log.with_suffix(f".{attempt}.log"), env)
        except RuntimeError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _start_once(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "wb") as handle:
        node = subprocess.Popen(
            [str(RAY), "start", "--block", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + _START_TIMEOUT_S
    while b"Ray runtime started" not in log.read_bytes():
        if node.poll() is not None or time.monotonic() > deadline:
            _stop(node)
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return node


def _stop(node: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return
        try:
            node.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def processes_naming(text: str) -> list[int]:
    """Pids whose command line contains `text` (this cluster's unique temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    # Workers import tests.ray.faults (the worker-kill hook) from the checkout.
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    common = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--object-store-memory=200000000",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
    ]
    nodes = []
    try:
        head_args = ["--head", f"--port={port}", "--include-dashboard=false", *common]
        nodes.append(_start_node(head_args, temp / "head.log", env))
        nodes.append(_start_node([f"--address=127.0.0.1:{port}", *common], temp / "worker.log", env))
        yield f"127.0.0.1:{port}"
    finally:
        for node in reversed(nodes):
            _stop(node)
        for pid in processes_naming(str(temp)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
