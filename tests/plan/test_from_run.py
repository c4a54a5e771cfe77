"""`domainlm plan --from-run`: a real run dir (prepared by `domainlm pretrain`) + its metrics records."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from domainlm.cli import app
from domainlm.cli.plan import register
from domainlm.errors import ConfigError, DataError
from domainlm.plan.flops import flops_per_token
from domainlm.plan.progress import run_progress
from domainlm.pretrain.metrics import MetricsWriter, compute_throughput
from domainlm.pretrain.run import prepare_run, write_run_files
from tests.pretrain.tiny import build_mix, build_tokenizer, read_docs

runner = CliRunner()
if "plan" not in {c.name for c in app.registered_commands}:
    register(app)

SEQ_LEN, WORLD, TOKENS_PER_STEP, MAX_STEPS = 64, 2, 8 * 64, 30
PER_TOKEN = flops_per_token(100_000, 2, 64, SEQ_LEN)  # what the loop would count for a tiny model
A100_BF16 = 312e12


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run dir as `domainlm pretrain` writes it (run_spec.json via write_run_files), with activation
    checkpointing on, and 12 one-step intervals of 0.5 s written by pretrain's MetricsWriter."""
    root = tmp_path_factory.mktemp("from_run")
    docs = {"legal": read_docs("legal", 12, 2000), "general": read_docs("general", 12, 2000)}
    tokenizer = build_tokenizer(root / "tokenizer", [t for texts in docs.values() for t in texts])
    mix = build_mix(root / "mix", tokenizer, docs, SEQ_LEN)
    recipe = {
        "name": "tiny",
        "model": {
            "arch": "llama",
            "hidden_size": 64,
            "num_layers": 2,
            "num_heads": 4,
            "intermediate_size": 128,
        },
        "data": {"mix": str(mix)},
        "train": {
            "global_batch_sequences": 8,
            "micro_batch_size": 2,
            "max_steps": MAX_STEPS,
            "precision": "bf16",
        },
        "deepspeed": {"zero_stage": 2, "activation_checkpointing": True},
        "launch": {"device": "cpu", "num_gpus": WORLD},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = root / "run"
    write_run_files(prepare_run(path, out=run))
    writer = MetricsWriter(run / "metrics.jsonl")
    for step in range(1, 13):
        seconds = 2.0 if step == 1 else 0.5  # the first interval includes warm-up
        tp = compute_throughput(TOKENS_PER_STEP, seconds, WORLD, PER_TOKEN, None)  # CPU: no MFU recorded
        writer.write(
            {"kind": "train", "step": step, "max_steps": MAX_STEPS, "loss": 5.0, "tokens_per_s_per_gpu":
             tp.tokens_per_s_per_gpu, "tflops_per_gpu": tp.tflops_per_gpu, "mfu": tp.mfu,
             "interval_tokens": TOKENS_PER_STEP, "interval_s": seconds}
        )  # fmt: skip
    writer.write({"kind": "eval", "step": 12, "domain": "legal", "loss": 5.1})
    return run


def test_from_run_reports_mfu_hfu_and_time_to_finish(run_dir):
    """Achieved MFU = tokens/s/GPU x (6N + 12·L·H·T) / peak (PaLM's definition, Chowdhery et al. 2022 App. B);
    HFU adds the recomputed forward of activation checkpointing, a third more (Narayanan et al. 2021's
    96 = 4 x 24 instead of 72). Last 10 intervals: 0.5 s per step, 18 steps left -> 9 s."""
    result = runner.invoke(app, ["plan", "--from-run", str(run_dir), "--gpu-type", "a100-80gb", "--json"])
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    assert (p["step"], p["max_steps"], p["world_size"], p["recompute"]) == (12, MAX_STEPS, WORLD, "full")
    assert p["tokens_per_s_per_gpu"] == pytest.approx(TOKENS_PER_STEP / 0.5 / WORLD)
    assert p["model_flops_per_token"] == pytest.approx(PER_TOKEN)
    assert p["mfu"] == pytest.approx(512.0 * PER_TOKEN / A100_BF16)
    assert p["hfu"] == pytest.approx(p["mfu"] * 4 / 3)
    assert p["seconds_per_step"] == pytest.approx(0.5) and p["remaining_seconds"] == pytest.approx(9.0)
    text = runner.invoke(app, ["plan", "--from-run", str(run_dir)])
    assert text.exit_code == 0, text.output
    assert "step 12/30 (40.0%)" in text.stdout and "MFU n/a (peak unknown: pass --gpu-type)" in text.stdout


def test_from_run_errors_name_the_file(run_dir, tmp_path):
    """No train records yet, a dir pretrain did not prepare, plan flags with --from-run: one-line errors."""
    with pytest.raises(DataError, match=r"metrics.jsonl: no train records"):
        run_progress(
            [{"kind": "eval", "step": 1}], max_steps=10, tokens_per_step=1, world_size=1, recompute="none"
        )
    result = runner.invoke(app, ["plan", "--from-run", str(tmp_path)])  # the CLI's main() exits 2 on these
    assert isinstance(result.exception, DataError) and "run_spec.json: not found" in str(result.exception)
    result = runner.invoke(app, ["plan", "--from-run", str(run_dir), "--params", "7B"])
    assert isinstance(result.exception, ConfigError) and "drop --params" in str(result.exception)
