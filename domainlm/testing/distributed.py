"""Prepared pretraining runs -> real DeepSpeed processes on N CPU ranks (gloo + shm), for tests and demos.

`train_together` runs several small runs in one launch so a test suite pays the process start-up
(importing torch, transformers and deepspeed in every rank) once; `start` / `kill_when` run one in
its own process group and SIGKILL it mid-training, the crash that checkpoint-resume must survive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from domainlm.pretrain.run import PreparedRun, launch_together, write_run_files


def train_together(runs: list[PreparedRun]) -> list[Path]:
    """Train `runs` one after another in the same ranks; raises if any rank fails."""
    return launch_together(runs)


def start(prepared: PreparedRun, log_path: Path) -> subprocess.Popen:
    """Start one run in a new process group (so the whole launcher tree can be killed at once)."""
    write_run_files(prepared)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            prepared.command, env=prepared.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_when(process: subprocess.Popen, condition: Callable[[], bool], timeout_s: float) -> bool:
    """SIGKILL the process group as soon as `condition()` holds; False if it exited or timed out first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return False
