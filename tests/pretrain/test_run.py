"""Run-dir rules checked before any rank starts: finished runs, --resume, changed recipes, --export-only."""

from __future__ import annotations

import json

import pytest

from domainlm.errors import ConfigError, DataError
from domainlm.mix.manifest import open_mix
from domainlm.outputs import has_marker, write_marker
from domainlm.pretrain.checkpoint import STATE_NAME
from domainlm.pretrain.config import load_recipe
from domainlm.pretrain.run import prepare_run, write_run_files
from domainlm.pretrain.spec import read_run_spec


def _checkpoint(run_dir, step, mix_dir, world_size=2, data_fingerprint=None):
    manifest = open_mix(mix_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not has_marker(run_dir):
        write_marker(run_dir, "pretrain")  # a run dir `domainlm pretrain` wrote
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
    written = write_run_files(prepared)
    saved = load_recipe(tmp_path / "run" / "recipe.yaml")
    assert saved == prepared.recipe
    spec = read_run_spec(tmp_path / "run")  # what every rank reads, and nothing else
    assert spec == written and spec.recipe == prepared.recipe
    assert spec.device == "cpu" and spec.seq_len == 64 and spec.max_steps == 30 and spec.world_size == 2
    assert spec.accumulation == 2 and spec.tokens_per_step == 8 * 64 and spec.ds_config == prepared.ds_config
    assert spec.vocab_size == 384 and spec.eos_token_id == 3
    assert spec.mix_fingerprint == open_mix(prepared.mix_dir).fingerprint
    assert "--module domainlm.pretrain.worker" in (tmp_path / "run" / "launch.sh").read_text()
    assert has_marker(tmp_path / "run")


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


def test_other_data_is_refused_and_another_rank_count_is_elastic(tiny_data, tiny_recipe, tmp_path):
    _checkpoint(tmp_path / "a", 10, tiny_data[1], data_fingerprint="f" * 64)
    with pytest.raises(DataError, match="cannot resume: data fingerprint ffffffffffff"):
        prepare_run(tiny_recipe, out=tmp_path / "a")
    assert prepare_run(tiny_recipe, out=tmp_path / "a", force_resume=True).resume_from is not None
    _checkpoint(tmp_path / "b", 10, tiny_data[1], world_size=4)
    assert prepare_run(tiny_recipe, out=tmp_path / "b").elastic  # another rank count: a universal resume


def test_a_directory_domainlm_did_not_write_is_refused(tiny_recipe, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"not written by domainlm"):
        prepare_run(tiny_recipe, out=mine)
    with pytest.raises(ConfigError, match=r"not written by domainlm"):
        prepare_run(tiny_recipe, out=mine, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"


def test_overwrite_starts_a_run_dir_pretrain_wrote_over(tiny_data, tiny_recipe, tmp_path):
    run_dir = tmp_path / "run"
    write_run_files(prepare_run(tiny_recipe, out=run_dir))
    _checkpoint(run_dir, 30, tiny_data[1])
    (run_dir / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="holds a finished run .*start over with --overwrite"):
        prepare_run(tiny_recipe, out=run_dir)
    prepared = prepare_run(tiny_recipe, out=run_dir, overwrite=True)
    assert prepared.resume_from is None  # its checkpoints are ignored: they are about to go
    assert (run_dir / "metrics.jsonl").exists()  # resolving deletes nothing
    write_run_files(prepared)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()
    assert has_marker(run_dir) and read_run_spec(run_dir).max_steps == 30
    with pytest.raises(ConfigError, match="--overwrite starts the run over, --resume needs its checkpoints"):
        prepare_run(tiny_recipe, out=run_dir, overwrite=True, resume=True)


def test_overwrite_never_deletes_an_input(tiny_data, tmp_path):
    """A run dir that holds the mix it reads: --overwrite would delete its own input."""
    import shutil

    import yaml

    from tests.pretrain.conftest import TINY_RECIPE

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_marker(run_dir, "pretrain")
    shutil.copytree(tiny_data[1], run_dir / "data")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "data": {"mix": str(run_dir / "data")}}))
    assert prepare_run(recipe, out=run_dir).seq_len.value == 64  # resuming beside it is fine
    with pytest.raises(ConfigError, match=r"contains this command's input"):
        prepare_run(recipe, out=run_dir, overwrite=True)


def test_the_run_spec_is_validated_when_read(tiny_recipe, tmp_path):
    write_run_files(prepare_run(tiny_recipe, out=tmp_path))
    path = tmp_path / "run_spec.json"
    data = json.loads(path.read_text())
    data["accumulation"] = 3  # a rank must never get a batch that does not add up
    path.write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=r"run_spec.json: .*global_batch_sequences 8 != micro_batch_size 2 x accumulation 3"
    ):
        read_run_spec(tmp_path)
    path.unlink()
    with pytest.raises(DataError, match=r"run_spec.json: not found"):
        read_run_spec(tmp_path)
