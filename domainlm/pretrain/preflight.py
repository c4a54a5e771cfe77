"""Checks before launch that would otherwise fail (or hang) on every rank after it: the packages the
ranks import (attention kernels, fused kernels, trackers) and a stale JIT build lock on CPU."""

from __future__ import annotations

import importlib.util

from domainlm.errors import ConfigError, ResourceError
from domainlm.pretrain import cpu_comm, trackers
from domainlm.pretrain.config import Recipe
from domainlm.pretrain.launch import LaunchSpec
from domainlm.pretrain.speed import check_switches


def check_packages(recipe: Recipe, device: str = "cuda") -> None:
    """Packages the ranks would import: missing ones fail here, in one line, not on every rank after launch."""
    check_switches(recipe, device)  # model.liger_kernels: the package, a GPU, a llama

    if recipe.model.attention == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise ConfigError(
                "model.attention flash_attention_2: the flash-attn package is not installed here (pip install "
                "flash-attn on every node), or set model.attention: sdpa (flash kernels through torch)"
            )
        if device == "cpu":
            raise ConfigError(
                "model.attention flash_attention_2: needs CUDA GPUs, but the run is on CPU ranks; "
                "set model.attention: sdpa"
            )
    trackers.check_packages(recipe.logging)


def check_build_lock(spec: LaunchSpec) -> None:
    """A killed launch's JIT build lock makes every CPU rank wait forever: say so instead of hanging."""
    lock = cpu_comm.stale_build_lock() if spec.device == "cpu" and not spec.remote else None
    if lock is not None:
        raise ResourceError(
            f"{lock}: a build lock left by a killed launch (older than {cpu_comm.STALE_LOCK_S // 60} min); "
            "delete it if no other DeepSpeed launch is building, then rerun"
        )
