"""The deepspeed launcher command, its environment, and the Slurm script."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainlm.errors import ConfigError, ResourceError
from domainlm.pretrain.config import LaunchConfig
from domainlm.pretrain.launch import deepspeed_command, launch_env, resolve_launch, sbatch_script


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
    with pytest.raises(ConfigError, match="--num-nodes 2: multi-node runs need --hostfile"):
        resolve_launch(LaunchConfig(num_gpus=8), num_nodes=2, gpus_available=8)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    spec = resolve_launch(LaunchConfig(num_gpus=8), num_nodes=2, hostfile=str(hostfile), gpus_available=8)
    cmd = deepspeed_command(spec, tmp_path / "run")
    assert cmd[1:5] == ["--hostfile", str(hostfile), "--num_nodes", "2"] and spec.world_size == 16
    assert spec.master_port == 29500  # every node must agree on it
    assert "DS_ACCELERATOR" not in launch_env(spec, base={})
    with pytest.raises(ConfigError, match="--hostfile .*missing: file not found"):
        resolve_launch(LaunchConfig(), hostfile=str(tmp_path / "missing"), gpus_available=8)


def test_more_gpus_than_present_is_a_resource_error():
    with pytest.raises(ResourceError, match="--num-gpus 8: this machine has 2 GPU"):
        resolve_launch(LaunchConfig(device="cuda"), num_gpus=8, gpus_available=2)


def test_slurm_script(tmp_path):
    spec = resolve_launch(LaunchConfig(num_gpus=8), num_nodes=4, launcher="slurm", gpus_available=0)
    assert spec.device == "cuda"  # the script runs on the GPU nodes
    script = sbatch_script(spec, tmp_path / "run", "legal")
    for line in [
        "#SBATCH --nodes=4",
        "#SBATCH --gpus-per-node=8",
        "--nproc_per_node 8",
        "--nnodes $SLURM_NNODES",
    ]:
        assert line in script
    assert f"--run-dir {Path(tmp_path / 'run').resolve()}" in script
