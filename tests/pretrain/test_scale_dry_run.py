"""`domainlm plan --write-recipe` for 13B and 50B Llama models on 64 H100s: `pretrain --dry-run` of the
recipe reports the host and device memory the run needs at start (construction) and in steady state.
The tiny mix stands in for the data: the memory depends on the shape, batch and strategy only."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from domainlm.cli import app
from domainlm.cli.plan import register
from domainlm.pretrain.dry_run import dry_run_report, recipe_shape
from domainlm.pretrain.run import prepare_run

runner = CliRunner()
if "plan" not in {c.name for c in app.registered_commands}:  # the CLI registers commands lazily
    register(app)


def _plan_recipe(tmp_path, mix, params: str):
    path = tmp_path / f"r{params}.yaml"
    args = ["plan", "--params", params, "--tokens", "300B", "--gpus", "64", "--nodes", "8", "--gpu-type"]
    args += ["h100-sxm", "--seq-len", "64", "--mix", str(mix), "--zero-init", "--write-recipe", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("params", ["13B", "50B"])
def test_planned_recipes_dry_run_with_start_and_steady_memory(tiny_data, tmp_path, params):
    recipe = _plan_recipe(tmp_path, tiny_data[1], params)
    prepared = prepare_run(recipe, [], tmp_path / "run", launcher="slurm", time_limit="2-00:00:00")
    report = dry_run_report(prepared)
    estimate = report["estimate"]
    assert report["world_size"] == 64 and report["command"].startswith("sbatch ")
    assert estimate["fits"] and estimate["device_start_fits"]
    assert (
        0 < estimate["device_start_gib"] < estimate["device_steady_gib"] <= 0.95 * estimate["gpu_memory_gib"]
    )
    assert estimate["host_start_per_node_gib"] > 0 and estimate["host_steady_per_node_gib"] >= 0
    if prepared.recipe.deepspeed.zero_stage == 3:
        # Sharded construction: a rank holds 1/64 of the 16-bit weights plus one module at start, and the
        # node's host RAM holds the largest module per rank, not the whole fp32 model per rank.
        assert estimate["sharded_construction"]
        whole_fp32_per_node = 4 * estimate["num_params"] * 8 * 1.5 / 2**30
        assert estimate["host_start_per_node_gib"] < whole_fp32_per_node / 20
        assert estimate["device_start_gib"] < 2 * estimate["num_params"] / 2**30 / 10
    assert params != "50B" or prepared.recipe.deepspeed.zero_stage == 3


def test_dry_run_time_charges_recompute_like_the_planner(tiny_data, tmp_path):
    """The planner assumes hardware FLOPs utilization (HFU 0.4): with activation checkpointing the step
    does 6N + 12LHT model FLOPs plus the 2N + 4LHT recompute forward per token (Narayanan et al. 2021:
    8 instead of 6), so --dry-run's step time is (8N + 16LHT)·tokens / (gpus · peak · 0.4)."""
    from domainlm.plan.hardware import get_gpu
    from domainlm.plan.planner import DEFAULT_HFU

    recipe = _plan_recipe(tmp_path, tiny_data[1], "50B")
    prepared = prepare_run(recipe, [], tmp_path / "run", launcher="slurm", time_limit="2-00:00:00")
    estimate = dry_run_report(prepared)["estimate"]
    model = prepared.recipe.model
    assert prepared.recipe.deepspeed.activation_checkpointing is True and estimate["recompute"] == "full"
    shape = recipe_shape(prepared)
    n, lht = shape.matmul_params, model.num_layers * model.hidden_size * 64
    per_step = (8 * n + 16 * lht) * estimate["tokens_per_step"]
    expected = per_step / (64 * get_gpu("h100-sxm").peak("bf16") * DEFAULT_HFU)
    assert estimate["assumed_hfu"] == DEFAULT_HFU
    assert estimate["step_seconds"] == pytest.approx(expected, rel=1e-3)
