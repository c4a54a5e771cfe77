"""Recipe schema (contract D): shipped recipes load and dry-run; bad recipes fail with the dotted path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from domainlm.errors import ConfigError
from domainlm.pretrain.config import (
    RECIPES_DIR,
    find_recipe,
    global_batch_sequences,
    gradient_accumulation_steps,
    load_recipe,
    max_steps,
)
from domainlm.pretrain.dry_run import dry_run_report
from domainlm.pretrain.run import prepare_run

SHIPPED = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def test_the_four_recipes_ship():
    assert SHIPPED == ["finance", "legal", "medical", "tiny_cpu"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_loads_and_dry_runs(name, tmp_path):
    recipe = load_recipe(name)
    assert Path(recipe.data.mix).is_file()  # a mix YAML from data_mixes/, resolved against recipes/
    prepared = prepare_run(name, out=tmp_path / name)
    report = dry_run_report(prepared)
    ds = report["deepspeed_config"]
    assert ds["train_batch_size"] == (
        ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * report["world_size"]
    )
    assert "domainlm.pretrain.worker" in report["command"]
    assert not (tmp_path / name).exists()  # a dry run writes nothing
    if name != "tiny_cpu":
        assert ds["bf16"]["enabled"] and ds["zero_optimization"]["stage"] == 3
        assert report["world_size"] == 8 and ds["gradient_accumulation_steps"] == 8
        estimate = report["estimate"]
        assert 1.0e9 < estimate["num_params"] < 1.3e9 and estimate["fits"]


def test_find_recipe_by_name_or_path(tmp_path):
    assert find_recipe("legal") == RECIPES_DIR / "legal.yaml"
    with pytest.raises(ConfigError, match="no such recipe.*legal"):
        find_recipe("legall")
    with pytest.raises(ConfigError, match="file not found"):
        find_recipe(str(tmp_path / "missing.yaml"))


def test_set_overrides_and_relative_paths(tmp_path):
    recipe = load_recipe("legal", ["train.micro_batch_size=4", "optimizer.lr=1e-4"])
    assert recipe.train.micro_batch_size == 4 and recipe.optimizer.lr == 1e-4
    assert Path(recipe.data.mix) == (RECIPES_DIR.parent / "data_mixes" / "legal_50_50.yaml").resolve()


def test_set_data_mix_is_relative_to_the_cwd_not_the_recipe(tmp_path, tiny_data):
    """The README's demo passes `--set data.mix=demo_out/mix`: typed by the user, so relative to the cwd
    (it was resolved against recipes/ and the demo stopped at its pretrain step)."""
    work = tmp_path / "work"
    shutil.copytree(tiny_data[1], work / "demo_out" / "mix")
    argv = ["pretrain", "--recipe", "tiny_cpu", "--dry-run", "--json"]
    argv += ["--set", "data.mix=demo_out/mix", "--set", "data.seq_len=null"]  # null: the mix's seq_len
    result = subprocess.run(
        [sys.executable, "-m", "domainlm", *argv],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["recipe"]["data"]["mix"] == str(work / "demo_out" / "mix")


def test_paths_in_a_recipe_are_relative_to_it_and_in_a_set_to_the_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    data = {**BASE, "data": {"mix": "../mixes/m", "tokenizer": "gpt2"}, "model": {"init_from": "ckpt"}}
    path = _write(folder, data)
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(path, ["launch.hostfile=hosts", "data.build_dir=built"])
    assert recipe.data.mix == str(tmp_path / "mixes" / "m")
    assert recipe.model.init_from == str(folder / "ckpt")
    assert Path(recipe.data.tokenizer, "tokenizer.json").is_file()  # the shipped GPT-2, a name not a path
    assert (recipe.launch.hostfile, recipe.data.build_dir) == (
        str(tmp_path / "hosts"),
        str(tmp_path / "built"),
    )
    assert load_recipe(path, ["data.mix=finance_51_49"]).data.mix == str(
        RECIPES_DIR.parent / "data_mixes" / "finance_51_49.yaml"
    )


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {"data": {"mix": "mix"}, "train": {"global_batch_sequences": 8, "max_steps": 10}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {**BASE["train"], "lrr": 1}}, r"train\.lrr: unknown key"),
        ({"model": {"hidden_sise": 64}}, r"model\.hidden_sise: unknown key"),
        ({"deepspeed": {"zero_stage": 4}}, r"deepspeed\.zero_stage: Input should be less than or equal to 3"),
        (
            {"deepspeed": {"zero_stage": 2, "offload_params": True}},
            r"deepspeed: .*offload_params needs zero_stage 3",
        ),
        ({"deepspeed": {"zero_stage": 0, "offload_optimizer": True}}, r"offload_optimizer needs zero_stage"),
        (
            {"objective": {"name": "mlm"}},
            r"objective.name 'mlm' does not fit model.arch 'llama'; use 'causal'",
        ),
        (
            {"train": {"global_batch_sequences": 8, "global_batch_tokens": "1M", "max_steps": 1}},
            r"train: .*exactly one",
        ),
        ({"train": {"global_batch_sequences": 8}}, r"exactly one of max_steps and total_tokens"),
        ({"model": {"hidden_size": 100, "num_heads": 8}}, r"model: .*not divisible by num_heads"),
        ({"train": {**BASE["train"], "precision": "fp8"}}, r"train\.precision"),
    ],
)
def test_bad_recipes_name_the_dotted_path(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, {**BASE, **change}))


def test_bad_set_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"optimizer\.lrr: unknown key"):
        load_recipe("legal", ["optimizer.lrr=1"])


def test_batch_arithmetic():
    train = load_recipe("legal").train
    assert global_batch_sequences(train, 2048) == 512
    assert gradient_accumulation_steps(train, 2048, 8) == 8
    assert max_steps(train, 2048) == -(-22_000_000_000 // (512 * 2048))  # 20,981
    with pytest.raises(ConfigError, match="not divisible by micro_batch_size 8 x 3 ranks"):
        gradient_accumulation_steps(train, 2048, 3)
    tokens = load_recipe("legal", ["train.global_batch_sequences=null", "train.global_batch_tokens=1M"]).train
    assert global_batch_sequences(tokens, 2048) == 489  # ceil(1e6 / 2048)


def test_bad_recipe_exits_2_without_traceback(tmp_path):
    path = _write(tmp_path, {**BASE, "optimizer": {"lr": 1e-3, "warmup": 5}})
    result = subprocess.run(
        [sys.executable, "-m", "domainlm", "pretrain", "--recipe", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "optimizer.warmup: unknown key" in result.stderr
