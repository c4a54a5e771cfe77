"""A checkpoint saved on W ranks -> resumable on W' ranks: DeepSpeed's universal checkpoint, converted on demand.

A ZeRO checkpoint holds one optimizer partition per rank, laid out for W ranks. `ds_to_universal`
rewrites it as one file per parameter and optimizer state (`<step>/universal/zero/<name>/*.pt`),
which an engine started with `checkpoint.load_universal` re-partitions for any rank count. The
conversion reads every partition once (for 50B parameters with Adam: ~600 GB of fp32 states), so it
runs only when the rank count changed, once per checkpoint, in the launching process (before any rank
waits on a collective that could time out), written to a temp folder and renamed when complete.

The data order depends only on the global sample count, and the global batch is kept, so every step
after an elastic resume consumes exactly the global samples the uninterrupted run would have.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError
from domainlm.outputs import remove_tree

log = logging.getLogger(__name__)

UNIVERSAL = "universal"  # the tag, under a checkpoint folder, of its universal form
_DONE = "universal_done"  # written last: a folder without it is a conversion killed midway


def universal_dir(checkpoint: Path) -> Path:
    return Path(checkpoint) / UNIVERSAL


def is_converted(checkpoint: Path) -> bool:
    return (universal_dir(checkpoint) / _DONE).is_file()


def convert(checkpoint: Path, workers: int | None = None) -> Path:
    """`checkpoint`'s universal form (converted now if not yet); returns its folder. Idempotent."""
    out = universal_dir(checkpoint)
    if is_converted(checkpoint):
        return out
    from deepspeed.checkpoint import ds_to_universal

    tmp = Path(checkpoint) / f".{UNIVERSAL}.tmp"
    for stale in (tmp, out):
        if stale.exists():
            remove_tree(stale)  # inside the marked run dir: left by a killed conversion
    if workers is None:  # a process pool pays a torch import per worker: worth it from a few GB on
        size = sum(f.stat().st_size for f in Path(checkpoint).glob("*.pt"))
        workers = 1 if size < 2**30 else max(1, min(8, os.cpu_count() or 1))
    args = argparse.Namespace(
        input_folder=str(checkpoint),
        output_folder=str(tmp),
        num_extract_workers=workers,
        num_merge_workers=max(1, workers // 2),
        keep_temp_folder=False,
        strict=True,
        # domainlm's HF models carry no Megatron-style UNIVERSAL_CHECKPOINT_INFO; a plain
        # data-parallel model needs none beyond the version key this adds.
        inject_missing_state=True,
    )
    printed = io.StringIO()
    log.info("converting %s to a universal checkpoint (the rank count changed)", checkpoint)
    with contextlib.redirect_stdout(printed):  # DeepSpeed prints a line per phase; keep stdout for --json
        ds_to_universal.main(args)
    remove_tree(Path(checkpoint) / "latest_universal")  # names the temp folder; we pass the tag
    (tmp / _DONE).write_text("ok\n", encoding="utf-8")
    os.replace(tmp, out)
    log.debug("%s", printed.getvalue())
    return out


def universal_config(ds_config: dict[str, Any]) -> dict[str, Any]:
    """The DeepSpeed JSON with `checkpoint.load_universal` on: the engine then loads re-partitioned states."""
    return {**ds_config, "checkpoint": {**ds_config.get("checkpoint", {}), "load_universal": True}}


def check_global_batch(
    path: Path,
    saved_ranks: int,
    saved_batch: int | None,
    batch: int,
    micro: int,
    world_size: int,
    allow_change: bool,
) -> None:
    """An elastic resume keeps the checkpoint's global batch (same samples per step, same lr per sample);
    one line naming what to change when it cannot, unless --allow-batch-change."""
    if saved_batch is not None and saved_batch != batch and not allow_change:
        raise ConfigError(
            f"{path}: saved with a global batch of {saved_batch} sequences, the recipe now gives {batch}; "
            f"set train.global_batch_sequences: {saved_batch}, or pass --allow-batch-change"
        )
    if batch % (micro * world_size) == 0:
        return
    fits = [n for n in range(1, batch + 1) if batch % (micro * n) == 0]
    micros = [m for m in range(1, micro + 1) if batch % (m * world_size) == 0]
    options = f"a rank count in {fits[:8]}" if fits else "another rank count"
    if micros:
        options += f", train.micro_batch_size {micros[-1]}"
    raise ConfigError(
        f"{path}: resuming on {world_size} ranks (saved on {saved_ranks}): the global batch of {batch} sequences "
        f"is not divisible by micro_batch_size {micro} x {world_size} ranks; use {options}, or "
        f"--allow-batch-change with --set train.global_batch_sequences=<a multiple of {micro * world_size}>"
    )


def reseed(seed: int, step: int, rank: int) -> None:
    """A rank that has no RNG state in the checkpoint (it did not exist then): a fresh stream that is a pure
    function of (seed, step, rank), so a rerun of the same resume draws the same numbers."""
    import random

    import numpy as np
    import torch

    mixed = (seed * 1_000_003 + step * 9_176 + rank) % (2**32)
    random.seed(mixed)
    np.random.seed(mixed)
    torch.manual_seed(mixed)
