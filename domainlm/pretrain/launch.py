"""Launch settings + run dir -> the `deepspeed` launcher command (one process per GPU, or per CPU rank), its
environment, or a ready-to-submit Slurm sbatch script.

On a machine without GPUs the same command runs N CPU ranks: `DS_ACCELERATOR=cpu` makes DeepSpeed use
gloo (plus its shared-memory all-reduce op, JIT-built once into ~/.cache/torch_extensions), and
`--num_gpus N` sets the number of local ranks whatever the accelerator is.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from domainlm.errors import ConfigError, ResourceError
from domainlm.pretrain.config import LaunchConfig

WORKER_MODULE = "domainlm.pretrain.worker"


@dataclass(frozen=True)
class LaunchSpec:
    """Resolved launch settings: flags applied over the recipe's `launch` section, device resolved."""

    device: str  # "cuda" or "cpu"
    num_gpus: int  # processes per node
    num_nodes: int
    hostfile: Path | None
    launcher: str  # "deepspeed" or "slurm"
    master_port: int

    @property
    def world_size(self) -> int:
        return self.num_gpus * self.num_nodes


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_launch(
    cfg: LaunchConfig,
    num_gpus: int | None = None,
    num_nodes: int | None = None,
    hostfile: str | None = None,
    launcher: str | None = None,
    gpus_available: int | None = None,
) -> LaunchSpec:
    """Flags over recipe; validate the combination before anything is started."""
    gpus = cuda_device_count() if gpus_available is None else gpus_available
    launcher = launcher or cfg.launcher
    # A Slurm script runs on the GPU nodes, not on the (often GPU-less) node that writes it.
    on_gpus = gpus > 0 or launcher == "slurm"
    device = cfg.device if cfg.device != "auto" else ("cuda" if on_gpus else "cpu")
    # `is None`, not `or`: an explicit 0 is a mistake to report, not a request for the recipe's value.
    for flag, value, what in (
        ("--num-gpus", num_gpus, "process per node (a GPU, or a CPU rank); drop it for launch.num_gpus"),
        ("--num-nodes", num_nodes, "node; drop it for launch.num_nodes"),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: must be at least 1 {what}")
    nodes = cfg.num_nodes if num_nodes is None else num_nodes
    spec = LaunchSpec(
        device=device,
        num_gpus=cfg.num_gpus if num_gpus is None else num_gpus,
        num_nodes=nodes,
        hostfile=Path(hostfile or cfg.hostfile) if (hostfile or cfg.hostfile) else None,
        launcher=launcher,
        master_port=cfg.master_port or default_port(nodes),
    )
    if spec.launcher not in ("deepspeed", "slurm"):
        raise ConfigError(f"--launcher {spec.launcher!r}: use deepspeed or slurm")
    if spec.launcher == "deepspeed" and spec.num_nodes > 1 and spec.hostfile is None:
        raise ConfigError(
            f"--num-nodes {spec.num_nodes}: multi-node runs need --hostfile (lines 'host slots=N') "
            "or --launcher slurm"
        )
    if spec.hostfile is not None and not spec.hostfile.is_file():
        raise ConfigError(f"--hostfile {spec.hostfile}: file not found")
    local = spec.launcher == "deepspeed" and spec.num_nodes == 1 and spec.hostfile is None
    if local and device == "cuda" and spec.num_gpus > gpus:
        raise ResourceError(
            f"--num-gpus {spec.num_gpus}: this machine has {gpus} GPU(s); lower --num-gpus "
            "(or set launch.device: cpu to run CPU ranks)"
        )
    return spec


def default_port(num_nodes: int) -> int:
    """A free local port for one node (so concurrent runs on a machine never collide), else 29500."""
    if num_nodes > 1:
        return 29500
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def deepspeed_executable() -> list[str]:
    """The `deepspeed` runner of this environment (beside the interpreter), else the module form."""
    beside = Path(sys.executable).parent / "deepspeed"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("deepspeed")
    return [found] if found else [sys.executable, "-m", "deepspeed.launcher.runner"]


def deepspeed_command(spec: LaunchSpec, run_dir: Path | list[Path]) -> list[str]:
    """`deepspeed [--hostfile H --num_nodes N] --num_gpus G ... --module domainlm.pretrain.worker --run-dir RUN`.

    Several run dirs train one after another in the same processes."""
    cmd = deepspeed_executable()
    if spec.hostfile is not None:
        cmd += ["--hostfile", str(spec.hostfile), "--num_nodes", str(spec.num_nodes)]
    cmd += [
        "--num_gpus",
        str(spec.num_gpus),
        "--master_port",
        str(spec.master_port),
        "--log_level",
        "warning",
        "--no_local_rank",
        "--module",
        WORKER_MODULE,
    ]
    for path in run_dir if isinstance(run_dir, list) else [run_dir]:
        cmd += ["--run-dir", str(Path(path).resolve())]
    return cmd


def launch_env(spec: LaunchSpec, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the launcher (inherited by every rank)."""
    env = dict(os.environ if base is None else base)
    if spec.device == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
        # One intra-op thread per core share: N ranks x M threads must not oversubscribe the cores.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // spec.num_gpus))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def sbatch_script(spec: LaunchSpec, run_dir: Path, job_name: str) -> str:
    """A Slurm batch script: one task per node, torchrun starting `num_gpus` ranks on each."""
    run_dir = Path(run_dir).resolve()
    return f"""#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --nodes={spec.num_nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={spec.num_gpus}
#SBATCH --cpus-per-task={max(8, 8 * spec.num_gpus)}
#SBATCH --exclusive
#SBATCH --output={run_dir}/logs/slurm-%j.out
# Written by `domainlm pretrain --launcher slurm`; submit with: sbatch {run_dir}/launch.sbatch
set -euo pipefail
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT={spec.master_port}
export OMP_NUM_THREADS=8
mkdir -p {run_dir}/logs
# torchrun sets RANK / LOCAL_RANK / WORLD_SIZE, which deepspeed.init_distributed reads.
srun --kill-on-bad-exit=1 bash -c '{sys.executable} -m torch.distributed.run \\
  --nnodes $SLURM_NNODES --node_rank $SLURM_NODEID --nproc_per_node {spec.num_gpus} \\
  --master_addr $MASTER_ADDR --master_port $MASTER_PORT \\
  -m {WORKER_MODULE} --run-dir {run_dir}'
"""


def format_command(cmd: list[str], spec: LaunchSpec) -> str:
    """The exact shell line, environment included, as --dry-run prints it."""
    prefix = (
        f"DS_ACCELERATOR=cpu OMP_NUM_THREADS={launch_env(spec)['OMP_NUM_THREADS']} "
        if spec.device == "cpu"
        else ""
    )
    return prefix + shlex.join(cmd)
