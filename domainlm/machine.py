"""Facts of the machine a command runs on, below every stage (imports nothing from domainlm)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask on Linux (a container or `taskset` may allow
    fewer than the machine has), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
