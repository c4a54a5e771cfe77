"""A worker fault for the retry test: the first document any worker processes kills that worker
(SIGKILL, as the OOM killer or a lost node would), once per marker file. Installed in every Ray
worker of the test's job through runtime_env's worker_process_setup_hook."""

from __future__ import annotations

import os
import signal
from pathlib import Path

MARKER_ENV = "DOMAINLM_TEST_KILL_MARKER"


def kill_once() -> None:
    from domainlm.corpus.curate.process import DocProcessor

    marker = Path(os.environ[MARKER_ENV])
    original = DocProcessor.process

    def process(self, ordinal, doc, repeat=False):  # type: ignore[no-untyped-def]
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return original(self, ordinal, doc, repeat)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the worker was killed")

    DocProcessor.process = process
