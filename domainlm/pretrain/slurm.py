"""Launch settings + run dir -> a Slurm batch script that trains, checkpoints when preempted, and requeues itself.

Slurm starts one task per GPU with `srun` (RANK / LOCAL_RANK / WORLD_SIZE from SLURM_PROCID /
SLURM_LOCALID / SLURM_NTASKS), so no ssh and no launcher process sits between Slurm and the ranks:
the `--signal=USR1@N` warning before the time limit (or a `scancel --signal=USR1`) reaches every rank,
which checkpoints at the next logging interval and exits with PREEMPTED_EXIT (domainlm.pretrain.preempt).
The script then requeues the job, and the requeued job resumes from that checkpoint on its own.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from domainlm.pretrain.launch import WORKER_MODULE, LaunchSpec
from domainlm.pretrain.preempt import PREEMPTED_EXIT, PREEMPTED_NAME

# Seconds of warning before the time limit: enough to finish a logging interval and write a checkpoint
# (a 50B ZeRO-3 checkpoint is ~600 GB of fp32 states; at ~5 GB/s of shared filesystem that is ~2 min).
SIGNAL_LEAD_S = 600


def sbatch_script(spec: LaunchSpec, run_dir: Path, job_name: str) -> str:
    """The whole sbatch text for `spec` (nodes, GPUs per node, --time) training `run_dir`."""
    run = shlex.quote(str(Path(run_dir).resolve()))
    master = (
        shlex.quote(spec.master_addr)
        if spec.master_addr
        else '$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'
    )
    time_line = f"#SBATCH --time={spec.time_limit}\n" if spec.time_limit else ""
    rank_env = "RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS"
    worker = f"exec {shlex.quote(sys.executable)} -m {WORKER_MODULE} --run-dir {run}"
    task = shlex.quote(f"{rank_env} {worker}")  # expanded by each task's shell, not by this script
    return f"""#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --nodes={spec.num_nodes}
#SBATCH --ntasks-per-node={spec.num_gpus}
#SBATCH --gpus-per-node={spec.num_gpus}
#SBATCH --cpus-per-task=8
#SBATCH --exclusive
{time_line}#SBATCH --signal=USR1@{SIGNAL_LEAD_S}
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={run}/logs/slurm-%j.out
# Written by `domainlm pretrain --launcher slurm`; submit with: sbatch {run}/launch.sbatch
# Preemption: USR1 {SIGNAL_LEAD_S}s before --time (or `scancel --signal=USR1 JOB`) -> every rank checkpoints
# and exits {PREEMPTED_EXIT} -> this script requeues the job -> the requeued job resumes from that checkpoint.
set -uo pipefail
export MASTER_ADDR={master}
export MASTER_PORT={spec.master_port}
export OMP_NUM_THREADS=8
mkdir -p {run}/logs
rm -f {run}/{PREEMPTED_NAME}
srun --kill-on-bad-exit=1 bash -c {task}
status=$?
if [ -f {run}/{PREEMPTED_NAME} ]; then
  echo "preempted: checkpoint written; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit $status
"""
