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
        "memory", "recommendation", "reason", "flags", "teaching", "notes",
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
    for title in ("Sizing", "Data", "Compute and time", "Shape", "Memory per GPU", "Recommendation"):
        assert title in result.stdout
    assert "1B params = 4 GB fp32 weights" in result.stdout


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
