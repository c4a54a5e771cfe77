"""Resume checks: fingerprints of data and tokenizer, world size, complete checkpoints only."""

from __future__ import annotations

import json

import pytest

from domainlm.errors import DataError
from domainlm.pretrain.checkpoint import STATE_NAME, TrainerState, check_resumable, latest_checkpoint

SAVED = TrainerState(
    step=10, consumed_samples=80, world_size=2, data_fingerprint="a" * 64, tokenizer_fingerprint="t" * 64
)


def test_other_data_or_tokenizer_is_refused_unless_forced(tmp_path):
    other = TrainerState(0, 0, 2, "b" * 64, "t" * 64)
    with pytest.raises(
        DataError, match=r"cannot resume: data fingerprint aaaaaaaaaaaa != mix bbbbbbbbbbbb.*--force-resume"
    ):
        check_resumable(SAVED, other, tmp_path, force=False)
    check_resumable(SAVED, other, tmp_path, force=True)
    with pytest.raises(DataError, match="tokenizer fingerprint"):
        check_resumable(SAVED, TrainerState(0, 0, 2, "a" * 64, "u" * 64), tmp_path, force=False)
    check_resumable(SAVED, TrainerState(0, 0, 2, "a" * 64, "t" * 64), tmp_path, force=False)


def test_weights_only_rng_state_round_trips(tmp_path):
    import random

    import numpy as np
    import torch

    from domainlm.pretrain.checkpoint import rng_state, set_rng_state

    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    torch.save(rng_state(), tmp_path / "rng_rank0.pt")
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(torch.load(tmp_path / "rng_rank0.pt", weights_only=True))  # no code runs to load it
    again = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])


def test_latest_ignores_checkpoints_without_state(tmp_path):
    root = tmp_path / "checkpoints"
    for step, complete in [(10, True), (20, True), (30, False)]:  # 30: killed mid-save
        folder = root / f"step_{step:08d}"
        folder.mkdir(parents=True)
        if complete:
            (folder / STATE_NAME).write_text(json.dumps({**SAVED.__dict__, "step": step}))
    path, state = latest_checkpoint(tmp_path)
    assert path.name == "step_00000020" and state.step == 20
    assert latest_checkpoint(tmp_path / "nothing") is None
