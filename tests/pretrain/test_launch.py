"""The deepspeed and torchrun launcher commands, their environment (.deepspeed_env), and the Slurm script."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainlm.errors import ConfigError, ResourceError
from domainlm.pretrain.config import LaunchConfig
from domainlm.pretrain.launch import (
    ENV_FILE,
    deepspeed_command,
    launch_command,
    launch_env,
    resolve_launch,
    write_launch_files,
)
from domainlm.pretrain.preempt import PREEMPTED_EXIT
from domainlm.pretrain.slurm import SIGNAL_LEAD_S, sbatch_script


def test_cpu_ranks_command_and_env(tmp_path):
    spec = resolve_launch(LaunchConfig(num_gpus=2), gpus_available=0)
    assert spec.device == "cpu" and spec.world_size == 2
    cmd = deepspeed_command(spec, [tmp_path / "a", tmp_path / "b"])
    assert cmd[0].endswith("deepspeed")
    assert 1024 <= spec.master_port < 65536  # a free port: concurrent runs on one machine do not collide
    assert cmd[1:] == [
        "--num_gpus", "2", "--master_port", str(spec.master_port), "--log_level", "warning", "--no_local_rank",
        "--module", "domainlm.pretrain.worker", "--run-dir", str(tmp_path / "a"), "--run-dir", str(tmp_path / "b"),
    ]  # fmt: skip
    env = launch_env(spec, base={})
    assert env["DS_ACCELERATOR"] == "cpu" and int(env["OMP_NUM_THREADS"]) >= 1


def test_multi_node_needs_a_hostfile(tmp_path):
    with pytest.raises(ConfigError, match="--num-nodes 2: multi-node runs need --hostfile .*torchrun"):
        resolve_launch(LaunchConfig(num_gpus=8), num_nodes=2, gpus_available=8)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    spec = resolve_launch(LaunchConfig(num_gpus=8), num_nodes=2, hostfile=str(hostfile), gpus_available=8)
    cmd = deepspeed_command(spec, tmp_path / "run")
    assert cmd[1:5] == ["--hostfile", str(hostfile), "--num_nodes", "2"] and spec.world_size == 16
    assert spec.master_port == 29500  # every node must agree on it
    assert spec.device == "auto"  # resolved by each rank on its node, not on this GPU-less login host
    assert "DS_ACCELERATOR" not in launch_env(spec, base={})
    with pytest.raises(ConfigError, match="--hostfile .*missing: file not found"):
        resolve_launch(LaunchConfig(), hostfile=str(tmp_path / "missing"), gpus_available=8)


def test_more_gpus_than_present_is_a_resource_error():
    with pytest.raises(ResourceError, match="--num-gpus 8: this machine has 2 GPU"):
        resolve_launch(LaunchConfig(device="cuda"), num_gpus=8, gpus_available=2)


def test_slurm_script_one_task_per_gpu_preemption_and_requeue(tmp_path):
    spec = resolve_launch(
        LaunchConfig(num_gpus=8), num_nodes=4, launcher="slurm", gpus_available=0, time_limit="2-00:00:00"
    )
    assert spec.device == "auto"  # the script runs on the GPU nodes: each rank resolves it there
    script = sbatch_script(spec, tmp_path / "run", "legal")
    run = Path(tmp_path / "run").resolve()
    for line in [
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --time=2-00:00:00",
        f"#SBATCH --signal=USR1@{SIGNAL_LEAD_S}",
        "#SBATCH --requeue",
        f"rm -f {run}/PREEMPTED",
        f"if [ -f {run}/PREEMPTED ]; then",
        'scontrol requeue "$SLURM_JOB_ID"',
    ]:
        assert line in script, line
    # srun starts the ranks itself (no launcher between Slurm's signal and the ranks), ranks from Slurm.
    assert "RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS exec" in script
    assert f"-m domainlm.pretrain.worker --run-dir {run}" in script
    assert "torch.distributed.run" not in script and PREEMPTED_EXIT == 75
    pinned = resolve_launch(LaunchConfig(), launcher="slurm", gpus_available=0, master_addr="10.0.0.5")
    assert "export MASTER_ADDR=10.0.0.5" in sbatch_script(pinned, tmp_path / "run", "x")
    for bad in ("2 days", "1:2"):
        with pytest.raises(ConfigError, match=f"--time '{bad}': not a Slurm time"):
            resolve_launch(LaunchConfig(), launcher="slurm", gpus_available=0, time_limit=bad)
    with pytest.raises(ConfigError, match="--time 1:00:00: a Slurm time limit; use it with --launcher slurm"):
        resolve_launch(LaunchConfig(), gpus_available=0, time_limit="1:00:00")


def test_torchrun_needs_no_ssh(tmp_path):
    one = resolve_launch(LaunchConfig(num_gpus=2), launcher="torchrun", gpus_available=0)
    assert one.device == "cpu" and not one.remote
    cmd = launch_command(one, tmp_path / "run")
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "2"]
    assert cmd[-4:] == ["-m", "domainlm.pretrain.worker", "--run-dir", str((tmp_path / "run").resolve())]
    assert launch_env(one, base={})["DS_ACCELERATOR"] == "cpu"
    with pytest.raises(ConfigError, match="--launcher torchrun --num-nodes 2: needs --master-addr"):
        resolve_launch(LaunchConfig(num_gpus=8), num_nodes=2, launcher="torchrun", gpus_available=0)
    many = resolve_launch(
        LaunchConfig(num_gpus=8), num_nodes=2, launcher="torchrun", gpus_available=0, master_addr="node0"
    )
    cmd = launch_command(many, tmp_path / "run")
    at = cmd.index("--rdzv_endpoint")
    assert cmd[at + 1] == "node0:29500" and cmd[cmd.index("--nnodes") + 1] == "2"
    assert many.device == "auto"
    with pytest.raises(ConfigError, match="--launcher 'mpirun': use one of deepspeed, torchrun, slurm"):
        resolve_launch(LaunchConfig(), launcher="mpirun", gpus_available=0)


def test_deepspeed_env_file_forwards_the_network_stack_to_remote_nodes(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    spec = resolve_launch(
        LaunchConfig(num_gpus=8), num_nodes=2, hostfile=str(hostfile), gpus_available=0, master_addr="node1"
    )
    base = {
        "NCCL_IB_HCA": "mlx5",
        "FI_PROVIDER": "efa",
        "LD_LIBRARY_PATH": "/opt/cuda/lib64",
        "HOME": "/home/x",
        "SECRET_TOKEN": "s",
        "MULTI": "a\nb",
        "NCCL_BAD": "a\nb",
    }
    write_launch_files(spec, tmp_path, "x", base=base)
    lines = (tmp_path / ENV_FILE).read_text().splitlines()
    assert lines == ["FI_PROVIDER=efa", "LD_LIBRARY_PATH=/opt/cuda/lib64", "NCCL_IB_HCA=mlx5"]
    # DeepSpeed's runner reads the file named by DS_ENV_FILE (else ~/.deepspeed_env or ./.deepspeed_env).
    assert launch_env(spec, base={}, run_dir=tmp_path)["DS_ENV_FILE"] == str(tmp_path.resolve() / ENV_FILE)
    assert deepspeed_command(spec, tmp_path)[5:7] == ["--master_addr", "node1"]
    local = resolve_launch(LaunchConfig(num_gpus=2), gpus_available=0)
    write_launch_files(local, tmp_path / "local", "x", base=base)
    assert not (tmp_path / "local" / ENV_FILE).exists()  # one node: the ranks inherit the environment
    assert "DS_ENV_FILE" not in launch_env(local, base={}, run_dir=tmp_path)
