import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from domainlm.cli import app
from domainlm.cli.plan import register

runner = CliRunner()
if "plan" not in {c.name for c in app.registered_commands}:
    register(app)

A100_30_DAYS = [
    "plan",
    "--gpus",
    "64",
    "--gpu-type",
    "a100-40gb",
    "--days",
    "30",
    "--mfu",
    "0.4",
    "--nodes",
    "8",
]


def test_json_has_every_section(mix_dir):
    result = runner.invoke(app, [*A100_30_DAYS, "--mix", str(mix_dir), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert set(plan) == {
        "sizing", "data", "compute", "shape", "seq_len", "precision", "gpu_memory_bytes",
        "memory", "recommendation", "reason", "flags", "teaching", "megatron", "host_memory_bytes", "notes",
    }  # fmt: skip
    assert plan["compute"]["days"] == pytest.approx(30.0)
    assert plan["shape"]["vocab_size"] == 131072  # from the mix manifest
    assert plan["teaching"]["weights_fp32_bytes"] == 4 * plan["shape"]["num_params"]
    assert [m["strategy"] for m in plan["memory"]][:4] == ["ddp", "zero1", "zero2", "zero3"]


def test_report_sections():
    result = runner.invoke(
        app, [*A100_30_DAYS, "--domain-tokens", "363B", "--general-tokens", "345B", "--domain-ratio", "0.51"]
    )
    assert result.exit_code == 0, result.output
    for title in (
        "Sizing",
        "Data",
        "Compute and time",
        "Shape",
        "Memory per GPU",
        "Strategies",
        "Recommendation",
    ):
        assert title in result.stdout
    assert "to hold:" in result.stdout and "16 bytes/param (ZeRO paper)" in result.stdout
    assert "Megatron-LM" not in result.stdout  # only with --tensor-parallel / --pipeline-parallel


def test_write_recipe_validates_against_pretrain_schema(mix_dir, tmp_path):
    from domainlm.pretrain.config import load_recipe

    out = tmp_path / "recipes" / "finance-13b.yaml"
    result = runner.invoke(app, [*A100_30_DAYS, "--mix", str(mix_dir), "--write-recipe", str(out), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    recipe = load_recipe(out)
    rec = plan["recommendation"]
    assert recipe.model.hidden_size == plan["shape"]["hidden_size"]
    assert recipe.model.num_layers == plan["shape"]["num_layers"]
    assert recipe.deepspeed.zero_stage == rec["zero_stage"]
    assert recipe.deepspeed.activation_checkpointing == rec["activation_checkpointing"]
    assert recipe.train.micro_batch_size == rec["micro_batch"]
    assert recipe.train.global_batch_sequences == rec["global_batch_sequences"]
    assert (recipe.launch.num_gpus, recipe.launch.num_nodes, recipe.launch.gpu_type) == (8, 8, "a100-40gb")
    assert recipe.data.mix == str(mix_dir.resolve())  # written relative, resolved on load
    assert recipe.data.seq_len == plan["seq_len"] == 2048  # the seq_len the plan was made with
    assert yaml.safe_load(out.read_text())["data"]["mix"] == "../mix"
    again = runner.invoke(app, [*A100_30_DAYS, "--mix", str(mix_dir), "--write-recipe", str(out)])
    assert again.exit_code != 0 and "file exists" in str(again.exception)


def test_seq_len_flag_that_disagrees_with_the_mix_is_one_line(mix_dir, tmp_path):
    out = tmp_path / "r.yaml"
    result = runner.invoke(
        app, [*A100_30_DAYS, "--mix", str(mix_dir), "--seq-len", "4096", "--write-recipe", str(out)]
    )
    message = str(result.exception)
    assert "--seq-len 4096 (flag) disagrees with seq_len 2048 of the mix" in message
    assert str(mix_dir / "manifest.json") in message and not out.exists()


def test_write_recipe_needs_a_mix(tmp_path):
    result = runner.invoke(app, [*A100_30_DAYS, "--write-recipe", str(tmp_path / "r.yaml")])
    assert "--write-recipe needs --mix" in str(result.exception)
    assert not (tmp_path / "r.yaml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "-7B"], "--params must be > 0"),
        (["--params", "7B", "--gpu-type", "a100-40gb", "--mfu", "1.2"], "--mfu must be a fraction"),
        (["--params", "7B", "--hours", "5", "--days", "1"], "give --hours or --days, not both"),
        (["--layers", "4", "--params", "7B"], "needs all of --layers, --hidden and --heads"),
        (["--params", "7B", "--attention", "paged"], "--attention 'paged'"),
        (
            ["--params", "7B", "--gpu-type", "h100", "--mfu", "0.4", "--hfu", "0.5"],
            "--mfu 0.4 and --hfu 0.5: give one",
        ),
        (["--params", "7B", "--recompute", "half"], "--recompute 'half': use one of none, selective, full"),
        (
            ["--params", "7B", "--recompute", "none", "--activation-checkpointing"],
            "--recompute none disagrees with --activation-checkpointing",
        ),
    ],
)
def test_flag_errors(args, message):
    result = runner.invoke(app, ["plan", *args])
    assert message in str(result.exception)


def test_bad_input_exits_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "domainlm", "plan", "--flops", "1e22", "--mfu", "1.5", "--gpu-type", "h100"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --mfu must be a fraction in (0, 1], got 1.5")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "constraint", "message"),
    [
        (
            ["--params", "70B", "--gpus", "1", "--gpu-type", "l4"],
            "memory",
            "even zero3 with one sequence per GPU",
        ),
        (
            ["--params", "7B", "--gpus", "8", "--gpu-type", "a100-40gb", "--micro-batch", "64"],
            "micro-batch",
            "--micro-batch 64 fits no strategy on the 42.9 GB a100-40gb; the largest that fits is",
        ),
    ],
)
def test_nothing_fits_says_which_constraint_and_exits_3(args, constraint, message):
    """Issue 14: when nothing fits, the failing constraint is in the text, in --json `reason`, and the
    exit status is 3 (documented in --help)."""
    result = runner.invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 3
    reason = json.loads(result.stdout)["reason"]
    assert reason["constraint"] == constraint and reason["message"].startswith(message)
    text = runner.invoke(app, ["plan", *args])
    assert text.exit_code == 3 and f"nothing fits {constraint}: {message}" in " ".join(text.stdout.split())
    assert "3 nothing fits the given GPUs" in " ".join(runner.invoke(app, ["plan", "--help"]).stdout.split())


def test_scarce_data_gets_no_pick_and_no_loss_above_uniform():
    """Issue 14's example: 0.6M unique tokens. Muennighoff et al. 2023 fitted 7M-9B params on >= 100M
    unique tokens, so no data-aware size is presented; a predicted loss above ln(vocab) (a uniform guess,
    ln 32000 = 10.37 nats) is never printed; the data a model of the chosen size needs is."""
    result = runner.invoke(app, ["plan", "--flops", "1e23", "--domain-tokens", "0.6M", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    data, sizing = plan["data"], plan["sizing"]
    assert data["best_params"] is None and any("unique tokens" in p for p in data["outside_fit"])
    assert sizing["predicted_loss"] is None or sizing["predicted_loss"] <= 10.38
    assert data["tokens_needed"] > 1e11 and data["unique_tokens_needed"] == data["tokens_needed"] / 4
    assert any("outside the data-constrained fit" in n for n in plan["notes"])
    assert "does not hold here" in sizing["chosen_by"]


def test_absurd_plan_is_flagged_first():
    """1B parameters on 10^16 tokens (Hoffmann et al. Table 3 pairs 1B with 20.2B) on 8 H100s: 6.06e9 x 1e16
    / (989 TFLOP/s x 0.4) = ~4,900 GPU-years, flagged before anything else is read."""
    result = runner.invoke(
        app, ["plan", "--params", "1B", "--tokens", "1e16", "--gpus", "8", "--gpu-type", "h100-sxm"]
    )
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("WARNING: this plan needs") and "GPU-years" in first


def test_write_recipe_refuses_selective_recompute(mix_dir, tmp_path):
    """pretrain's deepspeed.activation_checkpointing recomputes whole layers; Korthikanti et al. 2022's
    selective recompute cannot be written into a recipe, so the plan says which modes can."""
    out = tmp_path / "r.yaml"
    args = [*A100_30_DAYS, "--mix", str(mix_dir), "--recompute", "selective", "--write-recipe", str(out)]
    result = runner.invoke(app, args)
    assert "plan with --recompute full or none" in str(result.exception) and not out.exists()


def test_write_recipe_writes_a_bf16_ddp_plan_as_zero1(mix_dir, tmp_path):
    """A 125M model fits as DDP on 8 A100-80GB; pretrain accumulates bf16 gradients in fp32, which
    DeepSpeed supports only under ZeRO, so the recipe says ZeRO-1 (less memory than DDP) and loads."""
    from domainlm.pretrain.config import load_recipe

    out = tmp_path / "small.yaml"
    args = ["plan", "--params", "125M", "--gpu-type", "a100-80gb", "--gpus", "8", "--hours", "24"]
    result = runner.invoke(app, [*args, "--mix", str(mix_dir), "--write-recipe", str(out), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert (plan["recommendation"]["zero_stage"], plan["precision"]) == (0, "bf16")
    assert load_recipe(out).deepspeed.zero_stage == 1
