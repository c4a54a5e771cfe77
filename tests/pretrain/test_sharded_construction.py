"""ZeRO-3 sharded construction on 2 CPU ranks: each rank holds about half of the parameter bytes after
construction (measured from the partitions, `p.ds_tensor`), and training gives the losses of the path that
builds the whole model on every rank first, from scratch and from an `init_from` safetensors checkpoint.
One launch, four short runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from domainlm.pretrain.construct import init_weights
from domainlm.pretrain.metrics import read_metrics
from domainlm.pretrain.run import prepare_run
from domainlm.testing.distributed import train_together

STEPS = 4
COMMON = [
    "deepspeed.zero_stage=3",
    f"train.max_steps={STEPS}",
    "checkpoint.export_at_end=false",
    "eval.max_sequences=2",
]


def _tiny_llama(vocab_size: int):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        use_cache=False,
    )
    torch.manual_seed(7)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


@pytest.fixture(scope="module")
def construction_runs(tiny_recipe, tiny_data, tmp_path_factory) -> Path:
    from domainlm.tokenizer.load import load_tokenizer

    root = tmp_path_factory.mktemp("construct")
    model = _tiny_llama(load_tokenizer(tiny_data[0]).vocab_size)
    model.save_pretrained(root / "init", safe_serialization=True, max_shard_size="100KB")  # several shards
    assert len(list((root / "init").glob("*.safetensors"))) > 1
    init = [f"model.init_from={root / 'init'}"]
    runs = [
        # Tied embeddings from scratch: zero.Init must tie them as the whole model does (same bytes).
        prepare_run(tiny_recipe, [*COMMON, "model.tie_embeddings=true"], root / "sharded"),
        prepare_run(
            tiny_recipe, [*COMMON, "model.tie_embeddings=true", "deepspeed.zero_init=false"], root / "whole"
        ),
        prepare_run(tiny_recipe, [*COMMON, *init], root / "init_sharded"),
        prepare_run(tiny_recipe, [*COMMON, *init, "deepspeed.zero_init=false"], root / "init_whole"),
    ]
    train_together(runs)
    return root


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"}


def _held(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / "logs" / f"construct_rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["", "init_"])
def test_each_rank_holds_half_the_parameters_and_trains_the_same(construction_runs, prefix):
    sharded, whole = (
        _held(construction_runs / f"{prefix}sharded"),
        _held(construction_runs / f"{prefix}whole"),
    )
    full = whole[0]["full_param_bytes"]
    assert full > 100_000 and all(h["full_param_bytes"] == full for h in sharded + whole)
    for held in whole:
        assert held["resident_param_bytes"] == full and not held["sharded"]
    for held in sharded:
        # ZeRO-3 pads each parameter to a multiple of the world size: a few bytes over half.
        assert held["sharded"] and 0.5 <= held["resident_param_bytes"] / full < 0.51, held
    a, b = _losses(construction_runs / f"{prefix}sharded"), _losses(construction_runs / f"{prefix}whole")
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5), step


def test_per_module_init_does_not_depend_on_construction_order():
    """The seeds are per module name: a model initialized twice, or after other draws, is the same."""
    first, second = _tiny_llama(97), _tiny_llama(97)
    init_weights(first, seed=3)
    torch.rand(1000)  # another stream position
    init_weights(second, seed=3)
    for (name, a), b in zip(first.named_parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b), name
    std = float(first.model.layers[0].mlp.up_proj.weight.detach().std())
    assert abs(std - first.config.initializer_range) < 0.002  # HF's own init, not torch's default
