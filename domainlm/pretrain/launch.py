"""Launch settings + run dir -> the launcher command (`deepspeed`, or `torchrun`, which needs no ssh: one
process per GPU, or per CPU rank), its environment (`.deepspeed_env` for remote nodes), or a
ready-to-submit Slurm sbatch script (domainlm.pretrain.slurm).

On a machine without GPUs the same command runs N CPU ranks: `DS_ACCELERATOR=cpu` makes DeepSpeed use
gloo (plus its shared-memory all-reduce op, JIT-built once into ~/.cache/torch_extensions), and
`--num_gpus N` sets the number of local ranks whatever the accelerator is.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from domainlm.errors import ConfigError, ResourceError
from domainlm.machine import usable_cores
from domainlm.pretrain.config import LaunchConfig

WORKER_MODULE = "domainlm.pretrain.worker"
LAUNCHERS = ("deepspeed", "torchrun", "slurm")
_TIME = re.compile(r"(\d+-)?\d{1,2}:\d{2}:\d{2}|\d+")  # Slurm's [D-]HH:MM:SS, or minutes
ENV_FILE = ".deepspeed_env"  # the DeepSpeed runner exports its KEY=VALUE lines on every node (pdsh/ssh)
# Prefixes (and names) forwarded to remote nodes: the network stack (NCCL, libfabric, UCX), libraries,
# caches. The DeepSpeed runner itself forwards only PYTHON*, UCX*, MV2*, MLFLOW* and the accelerator's.
FORWARD_PREFIXES = ("NCCL_", "TORCH_NCCL_", "FI_", "UCX_", "CUDA_HOME", "HF_", "TRANSFORMERS_", "TRITON_")
FORWARD_NAMES = ("LD_LIBRARY_PATH", "PATH", "PYTHONPATH", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class LaunchSpec:
    """Resolved launch settings: flags applied over the recipe's `launch` section, device resolved."""

    device: str  # "cuda", "cpu", or "auto": resolved by each rank on its own node (remote launches)
    num_gpus: int  # processes per node
    num_nodes: int
    hostfile: Path | None
    launcher: str  # "deepspeed", "torchrun" or "slurm"
    master_port: int
    master_addr: str | None = None  # rendezvous host; None = the launcher's choice (first host)
    time_limit: str | None = None  # Slurm --time

    @property
    def remote(self) -> bool:
        """Whether ranks run on other machines than this one (their devices are not this host's)."""
        return self.launcher == "slurm" or self.num_nodes > 1 or self.hostfile is not None

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
    *,
    master_addr: str | None = None,
    time_limit: str | None = None,
) -> LaunchSpec:
    """Flags over recipe; validate the combination before anything is started."""
    gpus = cuda_device_count() if gpus_available is None else gpus_available
    launcher = launcher or cfg.launcher
    nodes = cfg.num_nodes if num_nodes is None else num_nodes
    remote = launcher == "slurm" or nodes > 1 or bool(hostfile or cfg.hostfile)
    # Remote ranks run on other nodes than this (often GPU-less login) node: each resolves `auto` itself.
    local_device = "cuda" if gpus > 0 else "cpu"
    device = cfg.device if cfg.device != "auto" else ("auto" if remote else local_device)
    # `is None`, not `or`: an explicit 0 is a mistake to report, not a request for the recipe's value.
    for flag, value, what in (
        ("--num-gpus", num_gpus, "process per node (a GPU, or a CPU rank); drop it for launch.num_gpus"),
        ("--num-nodes", num_nodes, "node; drop it for launch.num_nodes"),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: must be at least 1 {what}")
    spec = LaunchSpec(
        device=device,
        num_gpus=cfg.num_gpus if num_gpus is None else num_gpus,
        num_nodes=nodes,
        hostfile=Path(hostfile or cfg.hostfile) if (hostfile or cfg.hostfile) else None,
        launcher=launcher,
        master_port=cfg.master_port or default_port(nodes),
        master_addr=master_addr,
        time_limit=time_limit,
    )
    _check_launcher(spec)
    if spec.hostfile is not None and not spec.hostfile.is_file():
        raise ConfigError(f"--hostfile {spec.hostfile}: file not found")
    local = spec.launcher != "slurm" and not spec.remote
    if local and device == "cuda" and spec.num_gpus > gpus:
        raise ResourceError(
            f"--num-gpus {spec.num_gpus}: this machine has {gpus} GPU(s); lower --num-gpus "
            "(or set launch.device: cpu to run CPU ranks)"
        )
    return spec


def _check_launcher(spec: LaunchSpec) -> None:
    if spec.launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {spec.launcher!r}: use one of {', '.join(LAUNCHERS)}")
    if spec.launcher == "deepspeed" and spec.num_nodes > 1 and spec.hostfile is None:
        raise ConfigError(
            f"--num-nodes {spec.num_nodes}: multi-node runs need --hostfile (lines 'host slots=N'), "
            "--launcher torchrun with --master-addr, or --launcher slurm"
        )
    if spec.launcher == "torchrun" and spec.num_nodes > 1 and not spec.master_addr:
        raise ConfigError(
            f"--launcher torchrun --num-nodes {spec.num_nodes}: needs --master-addr (a host every node reaches; "
            "the same command then runs on each node)"
        )
    if spec.launcher == "torchrun" and spec.hostfile is not None:
        raise ConfigError(
            "--hostfile: torchrun starts only this node's ranks; drop --hostfile, or use --launcher deepspeed"
        )
    if spec.time_limit is not None and spec.launcher != "slurm":
        raise ConfigError(f"--time {spec.time_limit}: a Slurm time limit; use it with --launcher slurm")
    if spec.time_limit is not None and not _TIME.fullmatch(spec.time_limit):
        raise ConfigError(
            f"--time {spec.time_limit!r}: not a Slurm time; use [days-]hours:minutes:seconds, e.g. 2-00:00:00"
        )


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
    if spec.master_addr:
        cmd += ["--master_addr", spec.master_addr]
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


def torchrun_command(spec: LaunchSpec, run_dir: Path | list[Path]) -> list[str]:
    """`python -m torch.distributed.run ... -m domainlm.pretrain.worker --run-dir RUN`: this node's ranks, no ssh.

    Many nodes rendezvous through c10d at --master-addr, so the same command runs on every node."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(spec.num_gpus)]
    if spec.num_nodes > 1:
        cmd += [
            "--nnodes",
            str(spec.num_nodes),
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            f"{spec.master_addr}:{spec.master_port}",
            "--rdzv_id",
            f"domainlm-{spec.master_port}",
        ]
    else:
        cmd += ["--nnodes", "1", "--master_addr", spec.master_addr or "127.0.0.1"]
        cmd += ["--master_port", str(spec.master_port)]
    cmd += ["-m", WORKER_MODULE]
    for path in run_dir if isinstance(run_dir, list) else [run_dir]:
        cmd += ["--run-dir", str(Path(path).resolve())]
    return cmd


def launch_command(spec: LaunchSpec, run_dir: Path | list[Path]) -> list[str]:
    """The command that starts the ranks (Slurm: submitting the sbatch script, whose srun starts them)."""
    if spec.launcher == "slurm":
        first = run_dir[0] if isinstance(run_dir, list) else run_dir
        return ["sbatch", str(Path(first).resolve() / "launch.sbatch")]
    if spec.launcher == "torchrun":
        return torchrun_command(spec, run_dir)
    return deepspeed_command(spec, run_dir)


def forwarded_env(base: dict[str, str]) -> dict[str, str]:
    """The variables remote ranks need from this shell (one line each; multi-line values cannot be exported)."""
    return {
        key: value
        for key, value in sorted(base.items())
        if (key.startswith(FORWARD_PREFIXES) or key in FORWARD_NAMES) and "\n" not in value
    }


def write_launch_files(
    spec: LaunchSpec, run_dir: Path, job_name: str, base: dict[str, str] | None = None
) -> None:
    """What a remote launch reads besides run_spec.json: RUN/.deepspeed_env (multi-node DeepSpeed) or
    RUN/launch.sbatch (Slurm)."""
    from domainlm.outputs import atomic_write_text
    from domainlm.pretrain.slurm import sbatch_script

    if spec.launcher == "deepspeed" and spec.remote:
        lines = [f"{k}={v}" for k, v in forwarded_env(dict(os.environ if base is None else base)).items()]
        atomic_write_text(Path(run_dir) / ENV_FILE, "\n".join(lines) + "\n")
    if spec.launcher == "slurm":
        atomic_write_text(Path(run_dir) / "launch.sbatch", sbatch_script(spec, run_dir, job_name))


def launch_env(
    spec: LaunchSpec, base: dict[str, str] | None = None, run_dir: Path | None = None
) -> dict[str, str]:
    """Environment of the launcher (inherited by every local rank; remote ones get RUN/.deepspeed_env)."""
    env = dict(os.environ if base is None else base)
    if spec.launcher == "deepspeed" and spec.remote and run_dir is not None:
        env["DS_ENV_FILE"] = str(Path(run_dir).resolve() / ENV_FILE)  # the runner reads it by this name
    if spec.device == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
        # One intra-op thread per core share: N ranks x M threads must not oversubscribe the cores.
        env["OMP_NUM_THREADS"] = str(max(1, usable_cores() // spec.num_gpus))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def format_command(cmd: list[str], spec: LaunchSpec) -> str:
    """The exact shell line, environment included, as --dry-run prints it."""
    env = launch_env(spec, run_dir=Path(cmd[-1]) if cmd and spec.launcher == "deepspeed" else None)
    prefix = f"DS_ACCELERATOR=cpu OMP_NUM_THREADS={env['OMP_NUM_THREADS']} " if spec.device == "cpu" else ""
    if "DS_ENV_FILE" in env:
        prefix += f"DS_ENV_FILE={shlex.quote(env['DS_ENV_FILE'])} "
    return prefix + shlex.join(cmd)
