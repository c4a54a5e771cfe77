"""What DeepSpeed's CPU all-reduce leaves behind, and how domainlm keeps it from piling up.

On CPU ranks DeepSpeed maps one POSIX shared-memory buffer per rank (`/dev/shm/deepspeed_allreduce_buffer_
<uid>_<addr>_<port>_<rank>`, 66 MiB each) and never unlinks it: /dev/shm is RAM, so every 2-rank run
leaked 132 MiB until the machine swapped (a day of test runs left 22 GiB there). Each rank unlinks its
own buffer once every peer has mapped it: the mappings stay valid, and the kernel frees the memory when
the last rank exits, however it exits (SIGKILL included).

The shm op itself is JIT-built by torch under a `lock` file; a launch killed mid-build leaves the lock,
and every later launch then waits on it forever. A lock far older than a build is reported before launch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "deepspeed_allreduce_buffer"
SHM_OP = "deepspeed_shm_comm"
STALE_LOCK_S = 600  # the build takes one to two minutes on 2 cores


def shm_buffers(port: int | str, addr: str = "*") -> list[Path]:
    """The shared-memory buffers of the ranks that met at `addr:port` (all addresses by default)."""
    return sorted(SHM_DIR.glob(f"{SHM_PREFIX}_{os.getuid()}_{addr}_{port}_*"))


def release_own_shm_buffer(rank: int) -> None:
    """Collective: unlink this rank's buffer after every rank has mapped all of them (the barrier).

    DeepSpeed maps the peers' buffers inside `init_distributed`, and only when all ranks share the node;
    otherwise there is nothing to unlink. Costs one barrier at start."""
    import torch.distributed as dist

    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not (addr and port):
        return
    dist.barrier()
    # Only the name this rank's own DeepSpeed created for this run (its uid, rendezvous and rank): what a
    # domainlm command wrote. Other runs' buffers, and anything else in /dev/shm, are never touched.
    (SHM_DIR / f"{SHM_PREFIX}_{os.getuid()}_{addr}_{port}_{rank}").unlink(missing_ok=True)


def extension_roots() -> list[Path]:
    """Where torch JIT-builds extensions: $TORCH_EXTENSIONS_DIR, else its default under the cache dir."""
    from torch.utils.cpp_extension import get_default_build_root

    return [Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())]


def stale_build_lock(now: float | None = None, roots: list[Path] | None = None) -> Path | None:
    """The shm op's build lock if one is older than any build takes (left by a killed launch), else None."""
    now = time.time() if now is None else now
    for root in extension_roots() if roots is None else roots:
        for lock in root.glob(f"*/{SHM_OP}/lock"):
            try:
                age = now - lock.stat().st_mtime
            except FileNotFoundError:  # a build just finished
                continue
            if age > STALE_LOCK_S:
                return lock
    return None
