"""A killed launch's stale JIT build lock is named before launch instead of hanging every rank."""

from __future__ import annotations

import os
import time

import pytest

from domainlm.errors import ResourceError
from domainlm.pretrain import cpu_comm
from domainlm.pretrain.launch import LaunchSpec
from domainlm.pretrain.preflight import check_build_lock


def _lock(root, age_s: float):
    lock = root / "py311_cpu" / cpu_comm.SHM_OP / "lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    old = time.time() - age_s
    os.utime(lock, (old, old))
    return lock


def test_a_lock_older_than_any_build_is_stale(tmp_path):
    lock = _lock(tmp_path, cpu_comm.STALE_LOCK_S + 60)
    assert cpu_comm.stale_build_lock(roots=[tmp_path]) == lock


def test_a_build_in_progress_is_not_stale(tmp_path):
    _lock(tmp_path, 30)
    assert cpu_comm.stale_build_lock(roots=[tmp_path]) is None
    assert cpu_comm.stale_build_lock(roots=[tmp_path / "absent"]) is None


def test_a_cpu_launch_names_the_stale_lock(tmp_path, monkeypatch):
    lock = _lock(tmp_path, 3600)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    spec = LaunchSpec(
        device="cpu", num_gpus=2, num_nodes=1, hostfile=None, launcher="deepspeed", master_port=1
    )
    with pytest.raises(ResourceError, match=str(lock)):
        check_build_lock(spec)
    cuda = LaunchSpec(
        device="cuda", num_gpus=2, num_nodes=1, hostfile=None, launcher="deepspeed", master_port=1
    )
    check_build_lock(cuda)  # GPU ranks do not build the CPU op
    assert lock.is_file()  # reported, never deleted: it is torch's file


def test_shm_buffers_match_only_their_port(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_comm, "SHM_DIR", tmp_path)
    uid = os.getuid()
    for name in (
        f"{cpu_comm.SHM_PREFIX}_{uid}_127.0.0.1_4000_0",
        f"{cpu_comm.SHM_PREFIX}_{uid}_127.0.0.1_40001_0",
    ):
        (tmp_path / name).touch()
    assert [p.name for p in cpu_comm.shm_buffers(4000)] == [f"{cpu_comm.SHM_PREFIX}_{uid}_127.0.0.1_4000_0"]
