"""Engine + data position + RNG -> run_dir/checkpoints/step_N (keep last K); latest checkpoint -> resume state;
engine -> an HF model directory (contract E).

A checkpoint is complete once rank 0 has written its `trainer_state.json`, after every rank saved its
ZeRO partition and RNG state; a run killed mid-save leaves a folder without it, which resume ignores.
The state records the data and tokenizer fingerprints, so resuming against other data fails loudly.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domainlm.errors import ConfigError, DataError
from domainlm.outputs import atomic_output_dir, remove_tree, write_json
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


def check_resumable(state: TrainerState, current: TrainerState, path: Path, force: bool) -> None:
    """Refuse to resume against other data, another tokenizer, or another number of ranks."""
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
    if state.world_size != current.world_size:
        raise ConfigError(
            f"{path}: saved with {state.world_size} ranks, now {current.world_size}; "
            f"resume with --num-gpus/--num-nodes giving {state.world_size} ranks"
        )


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(engine: Any, run_dir: Path, state: TrainerState, rank: int, keep_last: int) -> Path:
    """Collective: every rank saves its partition and RNG; rank 0 marks it complete and prunes old ones."""
    root = checkpoints_dir(run_dir)
    tag = step_tag(state.step)
    ds.save_checkpoint(engine, root, tag, client_state={"trainer_state": asdict(state)})
    (root / tag).mkdir(parents=True, exist_ok=True)  # stage 0: only rank 0 writes DeepSpeed files
    torch.save(_rng_state(), root / tag / f"rng_rank{rank}.pt")
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


def restore(engine: Any, path: Path, rank: int) -> None:
    """Collective: load the engine state of checkpoint `path`, then this rank's RNG state."""
    ds.load_checkpoint(engine, path.parent, path.name)
    # weights_only=False: the python/numpy RNG states are plain tuples/arrays this run wrote itself.
    _set_rng_state(torch.load(path / f"rng_rank{rank}.pt", weights_only=False))


def export_hf(engine: Any, tokenizer_dir: Path, out: Path, rank: int) -> Path | None:
    """Collective: gather the full weights and write an HF model dir (safetensors, config, tokenizer) on rank 0."""
    from transformers import AutoTokenizer

    state_dict = ds.full_state_dict(engine)
    if rank == 0:
        model = engine.module
        with atomic_output_dir(out, overwrite=True, command="pretrain", inputs=[tokenizer_dir]) as tmp:
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp)
        log.info("exported %s", out)
    ds.barrier()
    return out if rank == 0 else None
