"""Engine + data position + RNG -> run_dir/checkpoints/step_N (keep last K); latest checkpoint -> resume state;
engine -> an HF model directory (contract E).

A checkpoint is complete once rank 0 has written its `trainer_state.json`, after every rank saved its
ZeRO partition and RNG state; a run killed mid-save leaves a folder without it, which resume ignores.
The state records the data and tokenizer fingerprints, so resuming against other data fails loudly.

What domainlm writes itself loads without running code: `trainer_state.json` is JSON and
`rng_rank<r>.pt` holds only tensors, ints and tuples (`torch.load(weights_only=True)`). DeepSpeed's own
files (`*_model_states.pt`, `*_optim_states.pt`) are pickles: load them only from runs you trust.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domainlm.errors import DataError
from domainlm.outputs import atomic_output_dir, remove_tree, write_json
from domainlm.pretrain import elastic
from domainlm.pretrain import engine as ds

log = logging.getLogger(__name__)

STATE_NAME = "trainer_state.json"


@dataclass(frozen=True)
class TrainerState:
    """What the loop needs to continue with the exact next batch, plus what it must match."""

    step: int  # optimizer steps done
    consumed_samples: int  # global sequences consumed
    world_size: int
    data_fingerprint: str
    tokenizer_fingerprint: str
    global_batch_sequences: int | None = None  # kept on an elastic resume; None in older checkpoints


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_tag(step: int) -> str:
    return f"step_{step:08d}"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders with a trainer_state.json, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / STATE_NAME).is_file())


def latest_checkpoint(run_dir: Path) -> tuple[Path, TrainerState] | None:
    found = complete_checkpoints(run_dir)
    if not found:
        return None
    path = found[-1]
    return path, TrainerState(**json.loads((path / STATE_NAME).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a rank resumes from, and whether it loads its universal form (rank count changed)."""

    path: Path
    state: TrainerState
    universal: bool


def resume_point(run_dir: Path, world_size: int, rank: int) -> ResumePoint | None:
    """Collective: the latest complete checkpoint; when it was saved on another rank count, its universal
    form, converted by rank 0 here only if the launching process has not already done it."""
    found = latest_checkpoint(run_dir)
    if found is None:
        return None
    path, state = found
    universal = state.world_size != world_size
    if universal and not elastic.is_converted(path):
        if rank == 0:
            elastic.convert(path)
        ds.barrier()
    return ResumePoint(path, state, universal)


def check_resumable(state: TrainerState, current: TrainerState, path: Path, force: bool) -> None:
    """Refuse to resume against other data or another tokenizer (another rank count is an elastic resume)."""
    problems = []
    if state.data_fingerprint != current.data_fingerprint:
        problems.append(
            f"data fingerprint {state.data_fingerprint[:12]} != mix {current.data_fingerprint[:12]}"
        )
    if state.tokenizer_fingerprint != current.tokenizer_fingerprint:
        problems.append(
            f"tokenizer fingerprint {state.tokenizer_fingerprint[:12]} != {current.tokenizer_fingerprint[:12]}"
        )
    if problems and not force:
        raise DataError(
            f"{path}: cannot resume: {'; '.join(problems)}; use the original data and tokenizer, "
            "a new --out, or --force-resume"
        )
    if problems:
        log.warning("resuming despite: %s (--force-resume)", "; ".join(problems))


def rng_state() -> dict[str, Any]:
    """Every RNG of this process as tensors, ints and tuples only: loads with weights_only=True."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),  # (version, tuple of 625 ints, None)
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
        "numpy_gauss": (int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(
        (numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], has_gauss, cached)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(engine: Any, run_dir: Path, state: TrainerState, rank: int, keep_last: int) -> Path:
    """Collective: every rank saves its partition and RNG; rank 0 marks it complete and prunes old ones."""
    root = checkpoints_dir(run_dir)
    tag = step_tag(state.step)
    ds.save_checkpoint(engine, root, tag, client_state={"trainer_state": asdict(state)})
    (root / tag).mkdir(parents=True, exist_ok=True)  # stage 0: only rank 0 writes DeepSpeed files
    torch.save(rng_state(), root / tag / f"rng_rank{rank}.pt")
    ds.barrier()
    if rank == 0:
        for name in ("recipe.yaml", "ds_config.json", "run_spec.json"):  # how it was trained
            if (Path(run_dir) / name).is_file():
                shutil.copy2(Path(run_dir) / name, root / tag / name)
        write_json(root / tag / STATE_NAME, asdict(state))
        for old in complete_checkpoints(run_dir)[:-keep_last]:
            remove_tree(old)  # the run dir carries domainlm's marker, so its checkpoints may go
        log.info("checkpoint %s", root / tag)
    ds.barrier()
    return root / tag


def restore(engine: Any, path: Path, state: TrainerState, rank: int, seed: int, universal: bool) -> None:
    """Collective: load the engine state of checkpoint `path` (its universal form after a change of rank
    count), then this rank's RNG state; a rank that had none (it did not exist then) is reseeded."""
    if universal:
        # DeepSpeed 0.19's ZeRO-3 universal load copies the first param group's hyperparameters into every
        # group, so the no-decay group (norms, biases) would decay again: keep each group's own.
        decays = [group.get("weight_decay") for group in engine.optimizer.param_groups]
        ds.load_checkpoint(engine, path, elastic.UNIVERSAL)
        for group, decay in zip(engine.optimizer.param_groups, decays, strict=True):
            group["weight_decay"] = decay
        _unshare_step_counters(engine.optimizer)
    else:
        ds.load_checkpoint(engine, path.parent, path.name)
    rng = path / f"rng_rank{rank}.pt"
    try:
        saved = torch.load(rng, weights_only=True) if rng.is_file() else None
    except pickle.UnpicklingError:  # written by an older domainlm with numpy arrays: not loaded as code
        log.warning("%s: an older RNG format that needs unpickling; reseeding rank %d", rng, rank)
        saved = None
    if saved is None:
        elastic.reseed(seed, state.step, rank)
    else:
        set_rng_state(saved)


def _unshare_step_counters(optimizer: Any) -> None:
    """DeepSpeed 0.19's ZeRO-3 universal load puts ONE `step` tensor object into the Adam state of every
    parameter group; torch's AdamW increments it in place once per group, so with two groups (decay and
    no-decay) bias correction ran ahead after a resume: losses 1e-3 off within 3 steps. Each state gets its
    own copy (one scalar per group: free)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # ZeRO wraps the torch optimizer
    for state in inner.state.values():
        step = state.get("step")
        if torch.is_tensor(step):
            state["step"] = step.clone()


def export_hf(engine: Any, tokenizer_dir: Path, out: Path, rank: int) -> Path | None:
    """Collective: gather the full weights and write an HF model dir (safetensors, config, tokenizer) on rank 0."""
    from transformers import AutoTokenizer

    from domainlm.pretrain.speed import trimmed_for_export

    state_dict = ds.full_state_dict(engine)
    if rank == 0:
        model, tokenizer = engine.module, AutoTokenizer.from_pretrained(tokenizer_dir)
        with (
            atomic_output_dir(out, overwrite=True, command="pretrain", inputs=[tokenizer_dir]) as tmp,
            trimmed_for_export(model, state_dict, len(tokenizer)) as state_dict,  # no padding rows
        ):
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        log.info("exported %s", out)
    ds.barrier()
    return out if rank == 0 else None
