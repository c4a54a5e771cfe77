"""`domainlm pretrain --export-init DIR`: the run's step-0 weights as an HF model dir, built without ranks.

The slow test launches real DeepSpeed (ZeRO-3, 2 CPU ranks) and has rank 0 export the engine's weights
before the first step: export-init must give the same tensors, bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from domainlm.errors import ConfigError
from domainlm.outputs import MARKER_NAME
from domainlm.pretrain.init_export import export_init
from domainlm.pretrain.run import launch, prepare_run, write_run_files


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = weights(a), weights(b)
    assert sorted(left) == sorted(right)
    for name, tensor in left.items():
        assert tensor.dtype == right[name].dtype == torch.float32, name
        assert torch.equal(tensor, right[name]), name


def test_export_init_is_the_model_the_ranks_build_from_the_run_spec(tiny_recipe, tmp_path):
    """What every rank builds (domainlm.pretrain.loop, from run_spec.json) == what export-init wrote."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from domainlm.pretrain.loop import prepare_model, spec_token_ids
    from domainlm.pretrain.spec import read_run_spec

    run_dir = tmp_path / "run"
    write_run_files(prepare_run(tiny_recipe, [], run_dir))
    out = export_init(tiny_recipe, [], tmp_path / "init", run_dir=run_dir)
    spec = read_run_spec(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_dir)
    rank_model = prepare_model(spec.recipe, spec_token_ids(spec, tokenizer), spec.seq_len)
    loaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    expected = rank_model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert loaded.config.vocab_size == spec.vocab_size == 384
    assert loaded.config.eos_token_id == spec.eos_token_id and loaded.config.use_cache is True
    assert AutoTokenizer.from_pretrained(out).get_vocab() == tokenizer.get_vocab()
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["command"] == "pretrain --export-init"
    # Another seed is another initialization: the export follows the recipe's seed.
    other = export_init(tiny_recipe, ["train.seed=2"], tmp_path / "seed2", run_dir=run_dir)
    embed = "model.embed_tokens.weight"
    assert not torch.equal(weights(out)[embed], weights(other)[embed])


def test_zero_steps_points_at_export_init(tiny_recipe, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.max_steps: .*0 trains nothing.*--export-init DIR"):
        prepare_run(tiny_recipe, ["train.max_steps=0"], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"train\.max_steps: .*-3 trains nothing"):
        export_init(tiny_recipe, ["train.max_steps=-3"], tmp_path / "init")
    assert not (tmp_path / "run").exists() and not (tmp_path / "init").exists()


def test_an_existing_dir_needs_overwrite_and_nothing_is_half_written(tiny_recipe, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not written by domainlm"):
        export_init(tiny_recipe, [], mine, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    out = export_init(tiny_recipe, [], tmp_path / "init")
    with pytest.raises(ConfigError, match="already exists; choose another --export-init or pass --overwrite"):
        export_init(tiny_recipe, [], out)
    before = weights(out)["model.embed_tokens.weight"]
    export_init(tiny_recipe, [], out, overwrite=True)  # same recipe and seed: same bytes
    assert torch.equal(before, weights(out)["model.embed_tokens.weight"])


def _pretrain(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "domainlm", "pretrain", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_cli_json_and_flags_that_need_training(tiny_recipe, tmp_path):
    result = _pretrain("--recipe", str(tiny_recipe), "--export-init", "init", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"init": str(tmp_path / "init")}
    assert (tmp_path / "init" / "config.json").is_file() and not (tmp_path / "runs").exists()
    bad = _pretrain(
        "--recipe", str(tiny_recipe), "--export-init", "again", "--resume", "--dry-run", cwd=tmp_path
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --export-init writes the initialization without training; drop --resume, --dry-run "
        "(or drop --export-init)"
    ]
    assert not (tmp_path / "again").exists()


@pytest.mark.slow
def test_export_init_equals_the_weights_deepspeed_starts_from(tiny_recipe, tmp_path):
    """ZeRO-3 on 2 CPU ranks: the engine's gathered weights at step 0 (rank 0's export before any step)."""
    prepared = prepare_run(tiny_recipe, ["deepspeed.zero_stage=3"], tmp_path / "run")
    prepared.export_only = True  # the ranks build, wrap and export the model; no checkpoint: step 0
    run_dir = launch(prepared)
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())
    init = export_init(tiny_recipe, ["deepspeed.zero_stage=3"], tmp_path / "init", run_dir=run_dir)
    assert_same_weights(run_dir / "export", init)
    assert json.loads((run_dir / "export" / "config.json").read_text()) == json.loads(
        (init / "config.json").read_text()
    )


def test_added_tokens_start_at_the_mean_of_their_pieces(tiny_data, tiny_recipe, mix_yaml, tmp_path):
    """Continued pretraining with an extended tokenizer: base rows kept, each new row the mean of its pieces."""
    base = export_init(tiny_recipe, [], tmp_path / "base")
    ext = tmp_path / "ext"
    made = subprocess.run(
        [sys.executable, "-m", "domainlm", "tokenizer", "extend", "--base", str(tiny_data[0])]
        + ["--corpus", "legal", "--num-tokens", "8", "--out", str(ext), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    added = json.loads((ext / "added_tokens_map.json").read_text())["tokens"]
    overrides = [f"data.mix={mix_yaml}", f"data.tokenizer={ext}", f"model.init_from={base}"]
    overrides += [f"model.added_tokens_map={ext / 'added_tokens_map.json'}", "model.new_token_init=mean"]
    init = export_init(tiny_recipe, overrides, tmp_path / "init", run_dir=tmp_path / "run")
    old, new = weights(base), weights(init)
    assert sorted(old) == sorted(new) and len(added) == 8
    for name, tensor in old.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert new[name].shape[0] == 384 + 8 and torch.equal(new[name][:384], tensor)
            for entry in added:
                mean = tensor[entry["base_ids"]].double().mean(dim=0).to(tensor.dtype)
                assert torch.equal(new[name][entry["id"]], mean), entry["token"]
        else:
            assert torch.equal(new[name], tensor), name
