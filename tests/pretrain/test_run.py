"""Run-dir rules checked before any rank starts: finished runs, --resume, changed recipes, --export-only."""

from __future__ import annotations

import json

import pytest

from domainlm.errors import ConfigError, DataError
from domainlm.mix.dataset import open_mix
from domainlm.pretrain.checkpoint import STATE_NAME
from domainlm.pretrain.config import load_recipe
from domainlm.pretrain.run import prepare_run, write_run_files


def _checkpoint(run_dir, step, mix_dir, world_size=2, data_fingerprint=None):
    manifest = open_mix(mix_dir)
    folder = run_dir / "checkpoints" / f"step_{step:08d}"
    folder.mkdir(parents=True)
    state = {
        "step": step,
        "consumed_samples": 8 * step,
        "world_size": world_size,
        "data_fingerprint": data_fingerprint or manifest.fingerprint,
        "tokenizer_fingerprint": manifest.tokenizer.fingerprint,
    }
    (folder / STATE_NAME).write_text(json.dumps(state))


def test_fresh_run_prepares_and_writes_its_files(tiny_recipe, tmp_path):
    prepared = prepare_run(tiny_recipe, out=tmp_path / "run")
    assert prepared.resume_from is None and prepared.spec.world_size == 2
    assert prepared.ds_config["gradient_accumulation_steps"] == 2  # 8 / (2 micro x 2 ranks)
    write_run_files(prepared)
    saved = load_recipe(tmp_path / "run" / "recipe.yaml")
    assert saved == prepared.recipe
    run_info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_info["device"] == "cpu" and run_info["seq_len"] == 64 and run_info["max_steps"] == 30
    assert "--module domainlm.pretrain.worker" in (tmp_path / "run" / "launch.sh").read_text()


def test_finished_run_is_not_retrained(tiny_data, tiny_recipe, tmp_path):
    _checkpoint(tmp_path, 30, tiny_data[1])
    with pytest.raises(ConfigError, match=r"holds a finished run \(step 30 of 30\)"):
        prepare_run(tiny_recipe, out=tmp_path)
    assert prepare_run(tiny_recipe, ["train.max_steps=40"], out=tmp_path).resume_from.name == "step_00000030"


def test_resume_and_export_only_need_a_checkpoint(tiny_recipe, tmp_path):
    with pytest.raises(ConfigError, match="--resume: no complete checkpoint"):
        prepare_run(tiny_recipe, out=tmp_path, resume=True)
    with pytest.raises(ConfigError, match="--export-only: no complete checkpoint"):
        prepare_run(tiny_recipe, out=tmp_path, export_only=True)


def test_changed_recipe_is_refused_unless_forced(tiny_data, tiny_recipe, tmp_path):
    write_run_files(prepare_run(tiny_recipe, out=tmp_path))
    _checkpoint(tmp_path, 10, tiny_data[1])
    with pytest.raises(
        ConfigError, match=r"recipe changed since its checkpoints \(model; train.seed 1 -> 2\)"
    ):
        prepare_run(tiny_recipe, ["model.hidden_size=128", "train.seed=2"], out=tmp_path)
    prepare_run(tiny_recipe, ["model.hidden_size=128"], out=tmp_path, force_resume=True)
    prepare_run(tiny_recipe, ["eval.every_steps=5"], out=tmp_path)  # eval/logging may change


def test_missing_tensorboard_is_named(tiny_recipe, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "tensorboard" else real(name)
    )
    with pytest.raises(ConfigError, match="logging.tensorboard: the tensorboard package is not installed"):
        prepare_run(tiny_recipe, ["logging.tensorboard=true"], out=tmp_path)


def test_other_data_or_rank_count_is_refused_before_any_rank_starts(tiny_data, tiny_recipe, tmp_path):
    _checkpoint(tmp_path / "a", 10, tiny_data[1], data_fingerprint="f" * 64)
    with pytest.raises(DataError, match="cannot resume: data fingerprint ffffffffffff"):
        prepare_run(tiny_recipe, out=tmp_path / "a")
    assert prepare_run(tiny_recipe, out=tmp_path / "a", force_resume=True).resume_from is not None
    _checkpoint(tmp_path / "b", 10, tiny_data[1], world_size=4)
    with pytest.raises(ConfigError, match="saved with 4 ranks, now 2"):
        prepare_run(tiny_recipe, out=tmp_path / "b")
