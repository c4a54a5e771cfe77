"""SIGUSR1 (Slurm's `--signal` warning before the time limit, or a scheduler's preemption notice) -> every rank
checkpoints at the next logging interval and exits PREEMPTED_EXIT; the next launch resumes from there.

The handler only sets a flag: saving inside a signal handler would interleave with a collective in
flight. The ranks agree on stopping with one all-reduce per logging interval (where the loop already
syncs), because a signal can reach the ranks during different steps and all must save the same one.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import torch

from domainlm.outputs import remove_tree, write_json

log = logging.getLogger(__name__)

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: try again later, which is what resuming does
PREEMPTED_NAME = "PREEMPTED"  # RUN/PREEMPTED: written by rank 0 once the checkpoint is complete
SIGNALS = (signal.SIGUSR1,)

_received: list[int] = []


def _handler(signum: int, frame: Any) -> None:
    _received.append(signum)


def install() -> None:
    """Catch the preemption signal in this rank (before it is the default action: terminate)."""
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def requested_locally() -> bool:
    return bool(_received)


def agreed(device: torch.device) -> bool:
    """Collective: whether any rank received the signal (so that all stop after the same step)."""
    flag = torch.tensor([1.0 if _received else 0.0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def should_stop(step: int, every_steps: int, device: torch.device) -> bool:
    """At logging boundaries only (one tiny all-reduce per interval, never one per step)."""
    return step % every_steps == 0 and agreed(device)


def mark(run_dir: Path, rank: int, step: int) -> None:
    """Rank 0: RUN/PREEMPTED names the step whose checkpoint the next launch resumes from."""
    if rank == 0:
        write_json(Path(run_dir) / PREEMPTED_NAME, {"step": step, "signal": "SIGUSR1"})
        log.info("preempted: checkpoint at step %d written; exiting %d to be resumed", step, PREEMPTED_EXIT)


def clear(run_dir: Path) -> None:
    remove_tree(Path(run_dir) / PREEMPTED_NAME)  # the run dir carries domainlm's marker
