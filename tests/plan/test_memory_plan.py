"""Memory items of `domainlm plan` end to end: published figures reproduced from the CLI and the API."""

import json

import pytest
from typer.testing import CliRunner

from domainlm.cli import app
from domainlm.cli.plan import register
from domainlm.errors import ConfigError
from domainlm.plan import PlanInputs, ShapeSpec, make_plan
from domainlm.plan.host import parse_host_memory

runner = CliRunner()
if "plan" not in {c.name for c in app.registered_commands}:
    register(app)


def _json(*args: str) -> dict:
    result = runner.invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_zero_paper_figures_from_the_cli():
    """Rajbhandari et al. 2020 fig. 1 (7.5B params, Nd = 64, K = 12): baseline 120 GB, ZeRO-1
    31.4 GB, ZeRO-2 16.6 GB, ZeRO-3 1.88 GB, from `plan --params 7.5B --gpus 64`, with the exact N
    (the Llama shape shown has 7.62B of its own)."""
    plan = _json("--params", "7.5B", "--gpus", "64", "--nodes", "8")
    rows = {m["strategy"]: m for m in plan["memory"]}
    printed = [f"{rows[s]['model_states_paper'] / 1e9:.3g}" for s in ("ddp", "zero1", "zero2", "zero3")]
    assert printed == ["120", "31.4", "16.6", "1.88"]
    assert plan["shape"]["num_params"] == 7_500_000_000 != plan["shape"]["shape_params"]
    assert plan["sizing"]["params"] == 7_500_000_000
    # 6ND with exactly N: the compute section uses 7.5e9, not the shape's own count.
    assert plan["compute"]["flops_6nd"] == pytest.approx(6 * 7.5e9 * plan["sizing"]["tokens"])


def test_rule_of_thumb_one_billion_params():
    """The newcomer's rule: 1B params = 4 GB in fp32 (2 bf16, 1 int8); Adam mixed precision 16 bytes
    per param (ZeRO paper), 20 with DeepSpeed's fp32 gradients; 8-bit Adam 10.03 / 14.03; SGD 12 / 16."""
    t = _json("--params", "1B")["teaching"]
    assert (t["weights_fp32_bytes"], t["weights_bf16_bytes"], t["weights_int8_bytes"]) == (4e9, 2e9, 1e9)
    assert (t["train_states_bytes"], t["train_upper_bytes"]) == (16e9, 20e9)
    eight = _json("--params", "1B", "--optimizer", "adamw-8bit")["teaching"]
    assert eight["train_states_bytes_per_param"] == pytest.approx(10.03125)
    sgd = make_plan(PlanInputs(params=1e9, optimizer="sgd", precision="fp32")).teaching
    assert (sgd["train_states_bytes_per_param"], sgd["train_upper_bytes_per_param"]) == (12, 12)


def test_bloomberggpt_shard_groups():
    """BloombergGPT (Wu et al. 2023, sec. 2.4): 50.6B params on 512 A100-40GB, ZeRO-3 sharded over
    128 GPUs with 4 replicas, activation checkpointing. Sharding over 128 instead of 512 costs 4x the
    states per GPU (18 bytes/param/128 = 7.1 GB, DeepSpeed's count) and still fits a 40 GB A100."""
    bloomberg = ShapeSpec(70, 7680, 40)
    kw = dict(shape=bloomberg, arch="bloom", vocab_size=131072, gpu_type="a100-40gb", num_gpus=512, nodes=64)
    kw |= dict(activation_checkpointing=True, micro_batch=1, tokens=569e9)
    grouped = make_plan(PlanInputs(**kw, shard_group_size=128))
    flat = make_plan(PlanInputs(**kw))
    g3 = next(m for m in grouped.memory if m.strategy == "zero3")
    f3 = next(m for m in flat.memory if m.strategy == "zero3")
    n = 50_558_868_480
    assert g3.shard_group_size == 128 and g3.fsdp == "HYBRID_SHARD"
    assert g3.weights + g3.grads_fp32 + g3.optimizer == pytest.approx(18 * n / 128)
    assert g3.model_states_paper == pytest.approx(4 * f3.model_states_paper)
    assert g3.fits
    with pytest.raises(ConfigError, match="--shard-group-size 96 must divide --gpus 512"):
        make_plan(PlanInputs(**kw, shard_group_size=96))


def test_host_memory_flag_and_zero_init():
    """Llama-2-70B (68.98B) on one 8-GPU node: every rank building the fp32 model needs 4 x 69 x 8 x 1.5
    = 3.3 TB of host RAM; with zero.Init the offloaded ZeRO-3 states (16 B/param x 1.5) decide: 1.66 TB."""
    llama70 = ["--layers", "80", "--hidden", "8192", "--heads", "64", "--kv-heads", "8", "--ffn", "28672"]
    base = [*llama70, "--gpus", "8", "--gpu-type", "a100-80gb", "--offload", "optimizer"]
    result = runner.invoke(app, ["plan", *base, "--no-zero-init"])
    assert result.exit_code == 3  # nothing fits: the host RAM constraint
    assert "host RAM" in result.output
    plan = _json(*base, "--zero-init", "--host-memory", "2TiB")
    n = 68_976_648_192
    assert plan["recommendation"]["host_per_node"] == pytest.approx(1.5 * 16 * n)
    row = next(m for m in plan["memory"] if m["strategy"] == "zero3+offload-opt")
    assert row["host_load_per_node"] == 4 * n * 8
    assert parse_host_memory("2TiB") == 2 * 1024**4 and parse_host_memory("900GB") == 900e9
    with pytest.raises(ConfigError, match="--host-memory '1T'"):
        parse_host_memory("1T")
    bad = runner.invoke(app, ["plan", "--params", "1B", "--optimizer", "lion"])
    assert isinstance(bad.exception, ConfigError) and "--optimizer 'lion'" in str(
        bad.exception
    )  # exit 2 in main()


def test_write_recipe_refuses_what_pretrain_does_not_train(tmp_path):
    """`domainlm pretrain` trains AdamW, ZeRO over all GPUs, no t/p: other plans write no recipe (zero.Init it
    does: deepspeed.zero_init, test_sharded_construction)."""
    out = tmp_path / "r.yaml"
    base = ["plan", "--params", "1B", "--gpus", "8", "--gpu-type", "a100-80gb", "--write-recipe", str(out)]
    for extra, flag in [
        (["--optimizer", "sgd"], "--optimizer sgd"),
        (["--shard-group-size", "4"], "--shard-group-size"),
        (["--tensor-parallel", "2"], "--tensor-parallel/--pipeline-parallel"),
    ]:
        result = runner.invoke(app, [*base, *extra])
        assert isinstance(result.exception, ConfigError), result.output
        assert f"--write-recipe with {flag}: domainlm pretrain trains with AdamW" in str(result.exception)
    assert not out.exists()
