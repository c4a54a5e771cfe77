"""Checks for launches over several nodes, made where they fail in one line: every rank sees the run dir
(naming the node), `device: auto` travels unresolved to remote ranks, a missing attention package fails
before launch."""

from __future__ import annotations

import importlib.util
import socket

import pytest

from domainlm.errors import ConfigError, DataError
from domainlm.pretrain import worker
from domainlm.pretrain.run import prepare_run, write_run_files
from domainlm.pretrain.spec import read_run_spec


def test_a_rank_that_cannot_see_the_run_dir_names_its_node(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "3")
    missing = tmp_path / "local_only"
    node = socket.gethostname()
    with pytest.raises(
        DataError, match=rf"run_spec.json: not found on node {node} \(rank 3\); .*shared filesystem"
    ):
        worker.check_visible(missing)
    with pytest.raises(SystemExit) as stopped:  # the worker process: one line, exit 2, no traceback
        worker.main(["--run-dir", str(missing)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f"on node {node} (rank 3)" in err[0]


def test_a_read_only_run_dir_is_named(tiny_recipe, tmp_path, monkeypatch):
    prepared = prepare_run(tiny_recipe, [], tmp_path / "run")
    write_run_files(prepared)
    worker.check_visible(prepared.run_dir)
    monkeypatch.setattr(worker.os, "access", lambda path, mode: False)  # root can write anywhere
    with pytest.raises(DataError, match=r"not writable on node .* mount it read-write on every node"):
        worker.check_visible(prepared.run_dir)


def test_device_auto_is_resolved_by_each_remote_rank(tiny_recipe, tmp_path):
    prepared = prepare_run(
        tiny_recipe, ["launch.device=auto"], tmp_path / "run", launcher="slurm", num_nodes=2
    )
    assert prepared.spec.device == "auto"  # not this (GPU-less) host's answer
    write_run_files(prepared)
    assert read_run_spec(prepared.run_dir).device == "auto"
    assert (prepared.run_dir / "launch.sbatch").is_file()
    local = prepare_run(tiny_recipe, ["launch.device=auto"], tmp_path / "local")
    assert local.spec.device == "cpu"  # one node: the launching host is where the ranks run


def test_flash_attention_without_its_package_fails_before_launch(tiny_recipe, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    installed = {"flash_attn": False}

    def find_spec(name, *args):
        if name == "flash_attn":
            return object() if installed["flash_attn"] else None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    flash = ["model.attention=flash_attention_2"]
    with pytest.raises(ConfigError, match="flash_attention_2: the flash-attn package is not installed"):
        prepare_run(tiny_recipe, flash, tmp_path / "run", launcher="slurm")  # the dry-run path too
    installed["flash_attn"] = True
    with pytest.raises(ConfigError, match="flash_attention_2: needs CUDA GPUs, but the run is on CPU ranks"):
        prepare_run(tiny_recipe, flash, tmp_path / "run")
    remote = prepare_run(tiny_recipe, [*flash, "launch.device=auto"], tmp_path / "run", launcher="slurm")
    assert remote.spec.device == "auto"  # GPU nodes: checked for the package, not for this host's GPUs
